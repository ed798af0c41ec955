// Charts for the notebooks, as MIME bundles that `show` sends to Deno's Jupyter kernel.
import { chartSvg, chartsFromMetrics, type ReportChart } from '@posttrain/cli';

/** A MIME bundle: what the notebook stores and draws. */
export type Bundle = Record<string, string>;

declare const Deno: { jupyter: { display(bundle: Bundle, options: { raw: true }): Promise<void> } };

/**
 * Displays a bundle now, as a display_data output sent while the cell runs (a cell's last
 * expression is sent only as it ends, which a loaded machine was seen to lose).
 */
export async function show(bundle: Bundle): Promise<void> {
  await Deno.jupyter.display(bundle, { raw: true });
  // Let the kernel send the message before the cell can end.
  await new Promise((resolve) => setTimeout(resolve, 100));
}

/** A bundle of one SVG. */
export function svg(markup: string): Bundle {
  return { 'image/svg+xml': markup };
}

/** Curves of a trainer's history (loss, rewards, KL …, as `posttrain --report` draws them); `keys` picks one chart of those metrics. */
export function curves(history: readonly Record<string, unknown>[], title?: string, keys?: readonly string[]) {
  const rows = history.filter((r) => r.kind === undefined || r.kind === 'train');
  const charts = keys ? chartsFromMetrics(rows, [{ title: title ?? keys.join(', '), keys }]).slice(0, 1) : chartsFromMetrics(rows);
  return svg(charts.map((c) => chartSvg(c)).join(''));
}

/** A chart of one or more named series of points. */
export function lines(title: string, series: ReportChart['series'], yLabel?: string) {
  return svg(chartSvg({ title, series, yLabel }));
}

/** Horizontal bars, one per label, values in [0, max]. */
export function bars(title: string, values: Record<string, number>, format: (v: number) => string = (v) => `${(v * 100).toFixed(1)}%`, max = 1) {
  const entries = Object.entries(values);
  const [left, width, row] = [170, 360, 26];
  const height = 34 + entries.length * row;
  const colors = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b'];
  const body = entries
    .map(([label, v], i) => {
      const y = 30 + i * row;
      const w = Math.max(1, (width * Math.min(v, max)) / max);
      return `<text x="${left - 8}" y="${y + 14}" text-anchor="end">${label}</text><rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="18" fill="${colors[i % colors.length]}"/><text x="${left + w + 6}" y="${y + 14}">${format(v)}</text>`;
    })
    .join('');
  return svg(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${left + width + 80}" height="${height}" font-family="system-ui, sans-serif" font-size="13"><rect width="100%" height="100%" fill="#fff"/><text x="10" y="18" font-weight="600">${title}</text>${body}</svg>`,
  );
}

/** A small HTML table. */
export function table(columns: string[], rows: (string | number)[][]) {
  const cell = (v: string | number) => `<td style="text-align:${typeof v === 'number' ? 'right' : 'left'};padding:2px 10px">${typeof v === 'number' ? v.toFixed(3) : v}</td>`;
  const html = `<table><tr>${columns.map((c) => `<th style="text-align:left;padding:2px 10px">${c}</th>`).join('')}</tr>${rows.map((r) => `<tr>${r.map(cell).join('')}</tr>`).join('')}</table>`;
  return { 'text/html': html, 'text/plain': rows.map((r) => r.join('\t')).join('\n') };
}

/** The figures a notebook ends with, one line the CI test reads: `RESULT {…}` (then a yield, so the line leaves the kernel before the cell ends). */
export async function result(figures: Record<string, number | string>): Promise<void> {
  console.log(`RESULT ${JSON.stringify(figures)}`);
  await new Promise((resolve) => setTimeout(resolve, 200));
}
