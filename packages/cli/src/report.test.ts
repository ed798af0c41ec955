import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { inflateSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { chartSvg, chartsFromMetrics, type ReportData, renderReport } from './report.js';

// What a DPO run logs (TRL's keys), with the blemishes real logs have: a NaN loss, a string field, an 'end' record
// repeating the last loss, and keys of no family.
const metrics: Record<string, unknown>[] = [];
for (let step = 1; step <= 40; step++) {
  metrics.push({
    kind: 'train',
    step,
    epoch: step / 40,
    loss: step === 7 ? Number.NaN : 0.69 * Math.exp(-step / 15) + 0.1,
    'rewards/chosen': 0.02 * step,
    'rewards/rejected': -0.015 * step,
    'rewards/accuracies': Math.min(1, 0.5 + step / 60),
    kl: step === 3 ? Number.POSITIVE_INFINITY : 0.001 * step * step,
    grad_norm: 3 / Math.sqrt(step),
    learning_rate: 5e-6,
    note: 'text is not a metric',
  });
  if (step % 10 === 0) metrics.push({ kind: 'eval', step, eval_loss: 0.7 * Math.exp(-step / 20) + 0.15 });
}
metrics.push({ kind: 'checkpoint', step: 40, path: 'out/step-40' }, { kind: 'end', step: 40, loss: 0.123, stoppedBy: 'maxSteps' });

const hostile = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">';

function reportData(): ReportData {
  return {
    title: 'DPO <tiny> & "pairs"',
    subtitle: "beta = 0.1, it's a test",
    createdAt: '2026-01-02T03:04:05.000Z',
    sections: [
      {
        title: 'Training',
        summary: 'Loss goes down.\nRewards separate.',
        charts: [
          ...chartsFromMetrics(metrics, [{ title: 'Gradient norm', keys: ['grad_norm'] }]),
          { title: 'One point', series: [{ name: 'only', points: [{ step: 5, value: 0.5 }] }] },
          { title: 'Constant', series: [{ name: 'flat', points: [1, 2, 3, 4].map((step) => ({ step, value: 2 })) }], yLabel: 'value' },
          { title: 'Nothing finite', series: [{ name: 'nan', points: [{ step: 1, value: Number.NaN }] }] },
        ],
        tables: [
          {
            title: 'Eval <after>',
            columns: ['model', 'loss', 'accuracy', 'tokens'],
            rows: [
              ['base', 2.345678, 0.5, 12345],
              ['dpo <b>', 1.5e-7, null, 99],
            ],
          },
        ],
        samples: [
          { prompt: 'Say hi & bye', completion: hostile, note: 'greedy' },
          { prompt: 'Count', completion: '1\n2\n3' },
        ],
      },
      { title: 'Second section', charts: [], tables: [], samples: [] },
    ],
  };
}

describe('chartsFromMetrics', () => {
  it('makes one chart per family (loss, rewards, KL), skipping non-finite values and non-metric records', () => {
    const charts = chartsFromMetrics(metrics);
    expect(charts.map((c) => c.title)).toEqual(['Loss', 'Rewards', 'KL']);
    const [loss, rewards, kl] = charts;
    expect(loss.series.map((s) => s.name)).toEqual(['loss', 'eval_loss']);
    expect(rewards.series.map((s) => s.name)).toEqual(['rewards/chosen', 'rewards/rejected', 'rewards/accuracies']);
    expect(kl.series.map((s) => s.name)).toEqual(['kl']);
    // step 7's NaN is gone and the 'end' record's repeated loss is not a 41st point
    expect(loss.series[0].points).toHaveLength(39);
    expect(loss.series[0].points.some((p) => p.step === 7)).toBe(false);
    expect(loss.series[1].points.map((p) => p.step)).toEqual([10, 20, 30, 40]);
    expect(kl.series[0].points.map((p) => p.step)).not.toContain(3);
    for (const chart of charts) for (const s of chart.series) for (const p of s.points) expect(Number.isFinite(p.value)).toBe(true);
    expect(rewards.series[0].points[1]).toEqual({ step: 2, value: 0.04 });
  });

  it('charts other keys only when a group names them, before the families, and drops empty groups', () => {
    const charts = chartsFromMetrics(metrics, [
      { title: 'Optimizer', keys: ['grad_norm', 'learning_rate'] },
      { title: 'Missing', keys: ['no_such_key'] },
      { title: 'Accuracy', keys: ['rewards/accuracies'] },
    ]);
    expect(charts.map((c) => c.title)).toEqual(['Optimizer', 'Accuracy', 'Loss', 'Rewards', 'KL']);
    expect(charts[0].series.map((s) => s.name)).toEqual(['grad_norm', 'learning_rate']);
    expect(charts[3].series.map((s) => s.name)).toEqual(['rewards/chosen', 'rewards/rejected']); // accuracies went to its group
  });

  it('gives no chart to a family whose values are all non-finite, and PPO-style keys land in their families', () => {
    const rows = [
      { step: 1, loss: Number.NaN, 'objective/kl': 0.5, 'objective/rlhf_reward': 1 },
      { step: 2, loss: Number.NaN, 'objective/kl': 0.7, 'objective/rlhf_reward': 1.5 },
      { step: 'three', 'objective/kl': 9 },
    ];
    const charts = chartsFromMetrics(rows);
    expect(charts.map((c) => [c.title, c.series.map((s) => s.name)])).toEqual([
      ['Rewards', ['objective/rlhf_reward']],
      ['KL', ['objective/kl']],
    ]);
    expect(chartsFromMetrics([])).toEqual([]);
  });
});

describe('renderReport', () => {
  const html = renderReport(reportData());

  it('escapes every piece of text', () => {
    expect(html).toContain('<title>DPO &lt;tiny&gt; &amp; &quot;pairs&quot;</title>');
    expect(html).toContain('beta = 0.1, it&#39;s a test');
    expect(html).toContain('&lt;script&gt;window.__pwned = 1&lt;/script&gt;&lt;img src=x onerror=&quot;window.__pwned = 2&quot;&gt;');
    expect(html).toContain('<caption>Eval &lt;after&gt;</caption>');
    expect(html).toContain('<td>dpo &lt;b&gt;</td>');
    expect(html).toContain('Say hi &amp; bye');
    expect(html).not.toMatch(/<script|<img|onerror="/i);
  });

  it('is self-contained: no script, no stylesheet link, no remote src/href', () => {
    expect(html.startsWith('<!doctype html>')).toBe(true);
    expect(html).not.toMatch(/<script\b/i);
    expect(html).not.toMatch(/<link\b/i);
    expect(html).not.toMatch(/\b(src|href)\s*=\s*["']?\s*(https?:)?\/\//i);
    expect(html).not.toMatch(/https?:\/\//i); // not even an SVG namespace URL
    expect(html).not.toMatch(/url\(|@import/i);
    expect(html).toContain(`content="default-src 'none'; style-src 'unsafe-inline'"`);
    for (const [, href] of html.matchAll(/href="([^"]*)"/g)) expect(href).toMatch(/^#section-\d+$/);
  });

  it('formats table numbers and shows null as —', () => {
    const cells = [...html.matchAll(/<td[^>]*>([^<]*)<\/td>/g)].map((m) => m[1]);
    expect(cells).toEqual(['base', '2.35', '0.5', '12345', 'dpo &lt;b&gt;', '1.5e-7', '—', '99']);
    expect(html).toContain('<td class="num">2.35</td>');
  });

  it('draws one svg.chart per chart with a line per series, round ticks, and the edge cases handled', () => {
    const svgs = [...html.matchAll(/<svg class="chart"[\s\S]*?<\/svg>/g)].map((m) => m[0]);
    expect(svgs).toHaveLength(7); // gradient norm, loss, rewards, KL, one point, constant, nothing finite
    const [grad, loss, rewards] = svgs;
    expect(grad.match(/<polyline /g)).toHaveLength(1);
    expect(loss.match(/<polyline /g)).toHaveLength(2);
    expect(rewards.match(/<polyline /g)).toHaveLength(3);
    expect(new Set([...rewards.matchAll(/<polyline [^>]*stroke="(#[0-9a-f]{6})"/g)].map((m) => m[1])).size).toBe(3);
    for (const name of ['rewards/chosen', 'rewards/rejected', 'rewards/accuracies']) expect(rewards).toContain(`>${name}</text>`);
    // x ticks of steps 1..40 are round numbers; y labels of the rewards chart step evenly
    const labels = (svg: string) => [...svg.matchAll(/<text [^>]*text-anchor="(?:end|middle)">([^<]*)<\/text>/g)].map((m) => m[1]);
    expect(labels(loss)).toEqual(expect.arrayContaining(['0', '10', '20', '30', '40', 'step']));
    expect(labels(rewards)).toEqual(['-1.0', '-0.5', '0', '0.5', '1.0', '0', '5', '10', '15', '20', '25', '30', '35', '40', 'step']);
    const [onePoint, constant, empty] = svgs.slice(4);
    expect(onePoint).toMatch(/<circle cx="[\d.]+" cy="[\d.]+" r="3"/);
    expect(constant).toMatch(/<polyline points="[\d.]+,([\d.]+) [\d.]+,\1 [\d.]+,\1 [\d.]+,\1"/);
    expect(constant).toContain('>value</text>');
    expect(empty).toContain('no finite values');
    expect(empty).toContain('nan (no data)');
    for (const svg of svgs) expect(svg).not.toMatch(/NaN|Infinity/);
  });

  it('handles a report with no sections', () => {
    const bare = renderReport({ title: 't', createdAt: 'now', sections: [] });
    expect(bare).toContain('<h1>t</h1>');
    expect(bare).not.toContain('<svg');
  });
});

// ---- the report in a real browser ----

/** Decodes an 8-bit, non-interlaced RGB or RGBA PNG (what Chromium's screenshots are) into RGBA pixels. */
function decodePng(png: Buffer): { width: number; height: number; rgba: Uint8Array } {
  expect(png.subarray(0, 8)).toEqual(Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]));
  let width = 0;
  let height = 0;
  let colorType = 0;
  const idat: Buffer[] = [];
  for (let offset = 8; offset < png.length; ) {
    const length = png.readUInt32BE(offset);
    const type = png.toString('latin1', offset + 4, offset + 8);
    const data = png.subarray(offset + 8, offset + 8 + length);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      colorType = data[9];
      expect({ bitDepth: data[8], interlace: data[12] }).toEqual({ bitDepth: 8, interlace: 0 });
      expect([2, 6]).toContain(colorType);
    } else if (type === 'IDAT') idat.push(data);
    else if (type === 'IEND') break;
    offset += 12 + length;
  }
  const channels = colorType === 6 ? 4 : 3;
  const stride = width * channels;
  const raw = inflateSync(Buffer.concat(idat));
  const pixels = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? pixels[y * stride + i - channels] : 0; // left
      const b = y > 0 ? pixels[(y - 1) * stride + i] : 0; // up
      const c = y > 0 && i >= channels ? pixels[(y - 1) * stride + i - channels] : 0; // up-left
      let predictor = 0;
      if (filter === 1) predictor = a;
      else if (filter === 2) predictor = b;
      else if (filter === 3) predictor = (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c;
        const [pa, pb, pc] = [Math.abs(p - a), Math.abs(p - b), Math.abs(p - c)];
        predictor = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      } else expect(filter).toBe(0);
      pixels[y * stride + i] = (line[i] + predictor) & 0xff;
    }
  }
  if (channels === 4) return { width, height, rgba: pixels };
  const rgba = new Uint8Array(width * height * 4);
  for (let p = 0; p < width * height; p++) rgba.set([pixels[p * 3], pixels[p * 3 + 1], pixels[p * 3 + 2], 255], p * 4);
  return { width, height, rgba };
}

/** The share of pixels unlike the most common colour, and how many pixels lie within `tolerance` of `color`. */
function inspect(png: Buffer, color: string, tolerance = 24): { ink: number; colored: number; pixels: number } {
  const { width, height, rgba } = decodePng(png);
  const target = [1, 3, 5].map((i) => Number.parseInt(color.slice(i, i + 2), 16));
  const counts = new Map<number, number>();
  for (let p = 0; p < rgba.length; p += 4) {
    const key = (rgba[p] << 16) | (rgba[p + 1] << 8) | rgba[p + 2];
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  const background = [...counts].sort((x, y) => y[1] - x[1])[0][0];
  const bg = [background >> 16, (background >> 8) & 0xff, background & 0xff];
  let ink = 0;
  let colored = 0;
  for (let p = 0; p < rgba.length; p += 4) {
    const rgb = [rgba[p], rgba[p + 1], rgba[p + 2]];
    if (rgb.some((v, i) => Math.abs(v - bg[i]) > tolerance)) ink++;
    if (rgb.every((v, i) => Math.abs(v - target[i]) <= tolerance)) colored++;
  }
  return { ink: ink / (width * height), colored, pixels: width * height };
}

describe('the report in headless Chromium', () => {
  it.skipIf(!existsSync('/usr/bin/chromium'))(
    'loads from file:// with no other request, runs no script, and draws every chart',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'posttrain-report-'));
      const { chromium } = await import('playwright-core');
      const browser = await chromium.launch({
        executablePath: '/usr/bin/chromium',
        args: ['--headless', '--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
      });
      try {
        const file = join(dir, 'report.html');
        writeFileSync(file, renderReport(reportData()));
        const url = pathToFileURL(file).href;
        // A control page with a remote image proves the recorder sees requests the page makes.
        const control = join(dir, 'control.html');
        writeFileSync(control, '<!doctype html><img src="https://example.invalid/x.png"><link rel="stylesheet" href="http://example.invalid/s.css">');

        const page = await browser.newPage({ viewport: { width: 1000, height: 800 } });
        const requests: string[] = [];
        page.on('request', (request) => requests.push(request.url()));
        const routed: string[] = [];
        await page.route('**', (route) => {
          routed.push(route.request().url());
          return route.request().url().startsWith('file:') ? route.continue() : route.abort();
        });

        await page.goto(pathToFileURL(control).href, { waitUntil: 'load' });
        expect(requests).toEqual(expect.arrayContaining(['https://example.invalid/x.png', 'http://example.invalid/s.css']));
        expect(routed).toEqual(expect.arrayContaining(['https://example.invalid/x.png', 'http://example.invalid/s.css']));
        requests.length = 0;
        routed.length = 0;

        await page.goto(url, { waitUntil: 'load' });
        await page.waitForLoadState('networkidle');
        expect(requests).toEqual([url]);
        expect(routed.filter((r) => r !== url)).toEqual([]);

        expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
        expect(await page.locator('script, img, link').count()).toBe(0);
        expect(await page.locator('pre.completion').first().textContent()).toBe(hostile);
        expect(await page.locator('td', { hasText: '—' }).count()).toBe(1);

        const charts = page.locator('svg.chart');
        expect(await charts.count()).toBe(7);
        const measured: { title: string; ink: number; colored: number }[] = [];
        for (let i = 0; i < 7; i++) {
          const chart = charts.nth(i);
          const color = await chart.locator('line[stroke]').first().getAttribute('stroke'); // the first series' legend swatch
          const shot = await chart.screenshot();
          writeFileSync(join(dir, `chart-${i}.png`), shot);
          const { ink, colored } = inspect(shot, color!);
          measured.push({ title: (await chart.locator('title').textContent())!, ink, colored });
        }
        const [grad, loss, rewards, kl, onePoint, constant, empty] = measured;
        // Drawn: axes, grid, tick labels and lines cover a good share of the picture (a no-data chart: < 0.5%).
        for (const m of [grad, loss, rewards, kl, onePoint, constant]) expect(m.ink, m.title).toBeGreaterThan(0.01);
        expect(empty.ink).toBeLessThan(0.01);
        // The first series' line: far more pixels of its colour than the legend swatch alone gives (the no-data
        // chart has only the swatch, ~40 px), and the lone point's dot adds to its swatch.
        for (const m of [grad, loss, rewards, kl, constant]) expect(m.colored, m.title).toBeGreaterThan(400);
        expect(empty.colored).toBeLessThan(100);
        expect(onePoint.colored).toBeGreaterThan(empty.colored + 15);

        const full = join(dir, 'report.png');
        await page.screenshot({ path: full, fullPage: true });
        expect(statSync(full).size).toBeGreaterThan(0);
        expect(requests).toEqual([url]);
      } finally {
        await browser.close();
        rmSync(dir, { recursive: true, force: true });
      }
    },
    60_000,
  );
});

describe('chartSvg', () => {
  it('is one standalone SVG document with the namespace, its own style and the drawn series', () => {
    const svg = chartSvg({ title: 'Loss', series: [{ name: 'loss', points: [1, 2, 3].map((step) => ({ step, value: 4 - step })) }] });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg" class="chart"')).toBe(true);
    expect(svg.endsWith('</svg>')).toBe(true);
    expect(svg).toMatch(/<style>svg\.chart \{ background: #fff;/);
    expect(svg.match(/<polyline /g)).toHaveLength(1);
    expect(svg).not.toContain('<figure>');
  });
});
