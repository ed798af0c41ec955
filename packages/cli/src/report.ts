// The `--report out/report.html` of the posttrain CLI: one self-contained HTML document (inline <style>, inline
// SVG charts, no script, no external resource of any kind) with metric curves, eval tables and sample completions.
// A Content-Security-Policy of `default-src 'none'` in the document itself makes "no network, no script" hold even
// for text we failed to foresee; every piece of text is HTML-escaped on the way in.

/** One line of a chart: a name for the legend and its (step, value) points. */
export interface ReportSeries {
  name: string;
  points: { step: number; value: number }[];
}

/** A line chart: one line per series, x is the optimizer step. */
export interface ReportChart {
  title: string;
  series: ReportSeries[];
  yLabel?: string;
}

/** A table; numbers are formatted to about 3 significant digits, `null` shows as '—'. */
export interface ReportTable {
  title: string;
  columns: string[];
  rows: (string | number | null)[][];
}

/** A prompt and the completion a model gave it, shown verbatim (escaped) in `<pre>`. */
export interface ReportSample {
  prompt: string;
  completion: string;
  note?: string;
}

/** One part of the report, e.g. one training run or one evaluation. */
export interface ReportSection {
  title: string;
  summary?: string;
  charts: ReportChart[];
  tables: ReportTable[];
  samples: ReportSample[];
}

/** Everything a report shows. `createdAt` is printed as given (an ISO timestamp reads best). */
export interface ReportData {
  title: string;
  subtitle?: string;
  createdAt: string;
  sections: ReportSection[];
}

/** Tableau 10: distinct at a glance, and the order lines usually get in plotting tools. */
const palette = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

const escapes: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for HTML element content and quoted attribute values. */
function escapeHtml(text: unknown): string {
  return String(text).replace(/[&<>"']/g, (c) => escapes[c]);
}

/** A number as a person reads it: integers in full, others to 3 significant digits, tiny or huge ones in e-notation. */
function formatNumber(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (!Number.isFinite(value)) return value > 0 ? '∞' : '−∞';
  if (Number.isInteger(value) && Math.abs(value) < 1e6) return String(value);
  const magnitude = Math.abs(value);
  if (magnitude !== 0 && (magnitude < 1e-3 || magnitude >= 1e6)) return value.toExponential(2).replace(/\.?0+e/, 'e');
  return String(Number(value.toPrecision(3)));
}

function formatCell(value: string | number | null | undefined): string {
  if (value === null || value === undefined) return '—';
  return typeof value === 'number' ? formatNumber(value) : value;
}

/** Evenly spaced round tick values (1, 2 or 5 × 10^k apart) covering [min, max], and the domain they span. */
function niceTicks(min: number, max: number, count: number, integer: boolean): { ticks: number[]; lo: number; hi: number; step: number } {
  if (min === max) {
    const pad = integer ? 1 : Math.abs(min) * 0.1 || 1;
    min -= pad;
    max += pad;
  }
  const raw = (max - min) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / magnitude;
  let step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * magnitude;
  if (integer) step = Math.max(1, Math.round(step));
  const first = Math.floor(min / step);
  const last = Math.ceil(max / step);
  const decimals = Math.max(0, Math.ceil(-Math.log10(step)) + 1);
  const ticks: number[] = [];
  for (let k = first; k <= last; k++) ticks.push(Number((k * step).toFixed(Math.min(decimals, 20))));
  return { ticks, lo: first * step, hi: last * step, step };
}

/** Tick labels with just enough decimals to tell neighbours apart. */
function tickLabel(value: number, step: number, largest: number): string {
  if (value === 0) return '0';
  if (largest >= 1e5 || step < 1e-4) return value.toExponential(Math.max(0, Math.ceil(Math.log10(Math.abs(value) / step)) - 1)).replace(/\.?0+e/, 'e');
  return value.toFixed(Math.max(0, Math.ceil(-Math.log10(step) - 1e-9)));
}

const chartWidth = 720;
const plotHeight = 220;
const margin = { left: 64, right: 20, bottom: 44 };
const legendRow = 18;

/** One inline SVG line chart. Non-finite points are left out; a chart with no finite point says so. */
function renderChart(chart: ReportChart): string {
  const series = chart.series.map((s, i) => ({
    name: s.name,
    color: palette[i % palette.length],
    points: s.points.filter((p) => Number.isFinite(p?.step) && Number.isFinite(p?.value)).sort((a, b) => a.step - b.step),
  }));
  // Legend items flow left to right in rows above the plot; text width is estimated at 7 px a character.
  const legend: string[] = [];
  let x = margin.left;
  let row = 0;
  for (const s of series) {
    const width = 30 + 7 * s.name.length;
    if (x + width > chartWidth - margin.right && x > margin.left) {
      x = margin.left;
      row += 1;
    }
    const y = 14 + row * legendRow;
    legend.push(
      `<line x1="${x}" y1="${y}" x2="${x + 18}" y2="${y}" stroke="${s.color}" stroke-width="3"/><text x="${x + 24}" y="${y + 4}">${escapeHtml(s.name)}${s.points.length === 0 ? ' (no data)' : ''}</text>`,
    );
    x += width + 12;
  }
  const top = 14 + (row + 1) * legendRow;
  const height = top + plotHeight + margin.bottom;
  const left = margin.left;
  const right = chartWidth - margin.right;
  const bottom = top + plotHeight;
  const all = series.flatMap((s) => s.points);
  const parts: string[] = [`<title>${escapeHtml(chart.title)}</title>`, `<rect class="plot" x="${left}" y="${top}" width="${right - left}" height="${plotHeight}"/>`];
  if (all.length === 0) {
    parts.push(`<text class="empty" x="${(left + right) / 2}" y="${top + plotHeight / 2}" text-anchor="middle">no finite values</text>`);
  } else {
    const steps = all.map((p) => p.step);
    const values = all.map((p) => p.value);
    const xs = niceTicks(Math.min(...steps), Math.max(...steps), 6, steps.every(Number.isInteger));
    const ys = niceTicks(Math.min(...values), Math.max(...values), 5, false);
    const px = (step: number) => left + ((step - xs.lo) / (xs.hi - xs.lo)) * (right - left);
    const py = (value: number) => bottom - ((value - ys.lo) / (ys.hi - ys.lo)) * plotHeight;
    const round = (n: number) => Math.round(n * 10) / 10;
    const yLargest = Math.max(Math.abs(ys.lo), Math.abs(ys.hi));
    for (const t of ys.ticks) {
      const y = round(py(t));
      parts.push(`<line class="grid" x1="${left}" y1="${y}" x2="${right}" y2="${y}"/><text x="${left - 6}" y="${y + 4}" text-anchor="end">${tickLabel(t, ys.step, yLargest)}</text>`);
    }
    const xLargest = Math.max(Math.abs(xs.lo), Math.abs(xs.hi));
    for (const t of xs.ticks) {
      const x = round(px(t));
      parts.push(`<line class="axis" x1="${x}" y1="${bottom}" x2="${x}" y2="${bottom + 5}"/><text x="${x}" y="${bottom + 18}" text-anchor="middle">${tickLabel(t, xs.step, xLargest)}</text>`);
    }
    parts.push(`<line class="axis" x1="${left}" y1="${bottom}" x2="${right}" y2="${bottom}"/><line class="axis" x1="${left}" y1="${top}" x2="${left}" y2="${bottom}"/>`);
    for (const s of series) {
      if (s.points.length === 0) continue;
      const coords = s.points.map((p) => `${round(px(p.step))},${round(py(p.value))}`);
      parts.push(`<polyline points="${coords.join(' ')}" fill="none" stroke="${s.color}" stroke-width="2" stroke-linejoin="round"/>`);
      // A lone point (or a few) would be invisible or easy to miss as a line alone.
      if (s.points.length <= 12) for (const c of coords) parts.push(`<circle cx="${c.split(',')[0]}" cy="${c.split(',')[1]}" r="3" fill="${s.color}"/>`);
    }
  }
  parts.push(`<text x="${(left + right) / 2}" y="${height - 8}" text-anchor="middle">step</text>`);
  if (chart.yLabel) parts.push(`<text x="14" y="${top + plotHeight / 2}" text-anchor="middle" transform="rotate(-90 14 ${top + plotHeight / 2})">${escapeHtml(chart.yLabel)}</text>`);
  const label = escapeHtml(`${chart.title}: ${series.map((s) => s.name).join(', ')}`);
  return `<figure><figcaption>${escapeHtml(chart.title)}</figcaption><svg class="chart" role="img" aria-label="${label}" width="${chartWidth}" height="${height}" viewBox="0 0 ${chartWidth} ${height}">${legend.join('')}${parts.join('')}</svg></figure>`;
}

/** The report's chart style, for a chart shown on its own. */
const standaloneChartStyle =
  'svg.chart { background: #fff; font: 12px system-ui, sans-serif; } svg.chart text { fill: #3b4252; } svg.chart .empty { fill: #6b7280; font-style: italic; } ' +
  'svg.chart .plot { fill: #fbfcfd; stroke: none; } svg.chart .grid { stroke: #e6e9ef; } svg.chart .axis { stroke: #8a92a3; }';

/**
 * One chart as a standalone SVG document (its own style, the SVG namespace), as a notebook shows
 * it: `Deno.jupyter.svg` or any `image/svg+xml` output.
 *
 * @example
 * ```ts
 * const [loss] = chartsFromMetrics(history);
 * const svg = chartSvg(loss); // '<svg xmlns="http://www.w3.org/2000/svg" class="chart" …'
 * ```
 */
export function chartSvg(chart: ReportChart): string {
  const html = renderChart(chart);
  const svg = html.slice(html.indexOf('<svg '), html.lastIndexOf('</svg>') + '</svg>'.length);
  return svg.replace('<svg ', '<svg xmlns="http://www.w3.org/2000/svg" ').replace(/(<svg[^>]*>)/, `$1<style>${standaloneChartStyle}</style>`);
}

function renderTable(table: ReportTable): string {
  const head = table.columns.map((c) => `<th>${escapeHtml(c)}</th>`).join('');
  const body = table.rows
    .map((row) => {
      const cells = table.columns.map((_, i) => `<td${typeof row[i] === 'number' ? ' class="num"' : ''}>${escapeHtml(formatCell(row[i]))}</td>`);
      return `<tr>${cells.join('')}</tr>`;
    })
    .join('\n');
  return `<table><caption>${escapeHtml(table.title)}</caption><thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

function renderSample(sample: ReportSample, index: number): string {
  const note = sample.note === undefined ? '' : `<p class="note">${escapeHtml(sample.note)}</p>`;
  return `<div class="sample"><h4>Sample ${index + 1}</h4>${note}<div class="label">prompt</div><pre>${escapeHtml(sample.prompt)}</pre><div class="label">completion</div><pre class="completion">${escapeHtml(sample.completion)}</pre></div>`;
}

function renderSection(section: ReportSection, index: number): string {
  const parts = [`<section id="section-${index + 1}"><h2>${escapeHtml(section.title)}</h2>`];
  if (section.summary) parts.push(`<p class="summary">${escapeHtml(section.summary)}</p>`);
  if (section.charts.length > 0) parts.push(`<div class="charts">${section.charts.map(renderChart).join('\n')}</div>`);
  for (const table of section.tables) parts.push(renderTable(table));
  if (section.samples.length > 0) parts.push(`<h3>Samples</h3>${section.samples.map(renderSample).join('\n')}`);
  parts.push('</section>');
  return parts.join('\n');
}

const style = `
:root { color-scheme: light; --ink: #1d2330; --muted: #5b6475; --rule: #d9dde5; }
body { margin: 0 auto; max-width: 980px; padding: 24px; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: #fff; }
h1 { margin: 0 0 4px; font-size: 26px; } h2 { margin-top: 36px; padding-bottom: 4px; border-bottom: 1px solid var(--rule); } h4 { margin: 0 0 6px; }
.subtitle, .meta, .note, .label { color: var(--muted); } .meta { font-size: 13px; } .summary { white-space: pre-wrap; }
nav ol { padding-left: 20px; } nav a { color: #1f5fb4; }
figure { margin: 16px 0; } figcaption { font-weight: 600; margin-bottom: 4px; }
svg.chart { display: block; max-width: 100%; height: auto; background: #fff; font: 12px system-ui, sans-serif; }
svg.chart text { fill: #3b4252; } svg.chart .empty { fill: var(--muted); font-style: italic; }
svg.chart .plot { fill: #fbfcfd; stroke: none; } svg.chart .grid { stroke: #e6e9ef; } svg.chart .axis { stroke: #8a92a3; }
table { border-collapse: collapse; margin: 16px 0; font-size: 14px; } caption { text-align: left; font-weight: 600; padding-bottom: 4px; }
th, td { border-bottom: 1px solid var(--rule); padding: 4px 12px; text-align: left; vertical-align: top; } th { background: #f4f6f9; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.sample { border: 1px solid var(--rule); border-radius: 6px; padding: 10px 14px; margin: 12px 0; } .label { font-size: 12px; text-transform: uppercase; letter-spacing: 0.04em; }
pre { margin: 2px 0 10px; padding: 8px 10px; background: #f4f6f9; border-radius: 4px; white-space: pre-wrap; word-break: break-word; font: 13px/1.45 ui-monospace, Menlo, Consolas, monospace; }
pre.completion { background: #eef6ee; }
@media print { body { max-width: none; } .sample, figure, table { break-inside: avoid; } }
`;

/**
 * Renders a report as one self-contained HTML document: an inline `<style>`, inline SVG charts and no script; the
 * document's Content-Security-Policy (`default-src 'none'`) forbids any request and any script, so opening it
 * fetches nothing. All text is HTML-escaped.
 *
 * @example
 * ```ts
 * import { writeFileSync } from 'node:fs';
 * import { chartsFromMetrics, renderReport } from './report.js';
 *
 * const metrics = [{ step: 1, loss: 0.69, 'rewards/chosen': 0.1 }, { step: 2, loss: 0.52, 'rewards/chosen': 0.4 }];
 * const html = renderReport({
 *   title: 'DPO on tiny-pairs',
 *   createdAt: new Date().toISOString(),
 *   sections: [{ title: 'Training', charts: chartsFromMetrics(metrics), tables: [], samples: [{ prompt: 'Hi', completion: 'Hello!' }] }],
 * });
 * writeFileSync('report.html', html);
 * ```
 */
export function renderReport(data: ReportData): string {
  const toc = data.sections.length > 1 ? `<nav><ol>${data.sections.map((s, i) => `<li><a href="#section-${i + 1}">${escapeHtml(s.title)}</a></li>`).join('')}</ol></nav>` : '';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>${escapeHtml(data.title)}</title>
<style>${style}</style>
</head>
<body>
<header><h1>${escapeHtml(data.title)}</h1>${data.subtitle ? `<p class="subtitle">${escapeHtml(data.subtitle)}</p>` : ''}<p class="meta">Created ${escapeHtml(data.createdAt)}</p></header>
${toc}
${data.sections.map(renderSection).join('\n')}
</body>
</html>
`;
}

/** The families charted by default, in this order; a key joins the first family it matches. */
const families: readonly { title: string; yLabel: string; test: (key: string) => boolean }[] = [
  { title: 'Loss', yLabel: 'loss', test: (key) => key.toLowerCase().endsWith('loss') },
  { title: 'Rewards', yLabel: 'reward', test: (key) => key.toLowerCase().includes('reward') },
  { title: 'KL', yLabel: 'KL', test: (key) => key.toLowerCase().includes('kl') },
];

/**
 * Turns the trainer's logged metric records (the rows of its JSONL `logFile`: a numeric `step` and numeric metric
 * keys) into charts, one line per key. By default a chart per family, in this order: loss (`loss` and any key ending
 * in `loss`, such as `eval_loss` or `nll_loss`), rewards (keys containing `reward`: `rewards/chosen`,
 * `rewards/accuracies`, `mean_reward`, …) and KL (keys containing `kl`: `kl`, `objective/kl`, …); a key joins the
 * first family it matches. Other keys (`grad_norm`, `learning_rate`, …) get a chart only when `groups` names them:
 * each group is charted, in its order, before the families, and a key a group names is left out of the families.
 * Records whose `kind` is neither 'train' nor 'eval' ('checkpoint', 'end') are skipped, as are non-finite values; a
 * chart with no point is not made.
 *
 * @example
 * ```ts
 * import { chartsFromMetrics } from './report.js';
 *
 * const rows = [
 *   { kind: 'train', step: 1, loss: 0.69, kl: 0, grad_norm: 3.1 },
 *   { kind: 'train', step: 2, loss: 0.61, kl: 0.02, grad_norm: 2.4 },
 *   { kind: 'eval', step: 2, eval_loss: 0.64 },
 * ];
 * chartsFromMetrics(rows).map((c) => c.title); // ['Loss', 'KL'] (Loss has the lines 'loss' and 'eval_loss')
 * chartsFromMetrics(rows, [{ title: 'Gradient norm', keys: ['grad_norm'] }]).map((c) => c.title); // ['Gradient norm', 'Loss', 'KL']
 * ```
 */
export function chartsFromMetrics(rows: readonly Record<string, unknown>[], groups: readonly { title: string; keys: readonly string[] }[] = []): ReportChart[] {
  const points = new Map<string, { step: number; value: number }[]>();
  for (const row of rows) {
    const { step, kind } = row;
    if (typeof step !== 'number' || !Number.isFinite(step)) continue;
    if (typeof kind === 'string' && kind !== 'train' && kind !== 'eval') continue;
    for (const [key, value] of Object.entries(row)) {
      if (key === 'step' || typeof value !== 'number' || !Number.isFinite(value)) continue;
      const list = points.get(key) ?? [];
      if (list.length === 0) points.set(key, list);
      list.push({ step, value });
    }
  }
  const chart = (title: string, keys: readonly string[], yLabel?: string): ReportChart[] => {
    const series = keys.filter((key) => (points.get(key)?.length ?? 0) > 0).map((name) => ({ name, points: points.get(name)! }));
    if (series.length === 0) return [];
    return [yLabel === undefined ? { title, series } : { title, series, yLabel }];
  };
  const named = new Set(groups.flatMap((g) => g.keys));
  const free = [...points.keys()].filter((key) => !named.has(key));
  const claimed = new Set<string>();
  const charts = groups.flatMap((g) => chart(g.title, g.keys));
  for (const family of families) {
    const keys = free.filter((key) => !claimed.has(key) && family.test(key));
    for (const key of keys) claimed.add(key);
    charts.push(...chart(family.title, keys, family.yLabel));
  }
  return charts;
}
