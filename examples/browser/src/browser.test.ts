// The page in headless Chromium (Debian's, driven by playwright-core): trained on wasm and on
// WebGPU (SwiftShader, a software Vulkan: slow, so few steps), the downloaded adapter loaded in
// Node, a snapshot offered mid-training complete after the tab is closed, and the errors shown on
// the page. Screenshots are kept in out/browser-test/.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { initBackend } from '@posttrain/tensor-core';
import { generateSplit, loadTokenizer, reversalTask } from '@posttrain/data';
import { loadModel } from '@posttrain/models';
import { loadAdapter } from '@posttrain/lora';
import { exactMatch } from '@posttrain/eval';
import type { PageState } from './app.js';
import { TINY_BASE_DIR, buildPage, servePage } from './page.js';

const chromiumPath = '/usr/bin/chromium';
const swiftShader = '/usr/lib/chromium/vk_swiftshader_icd.json';
const shots = join(process.cwd(), 'out', 'browser-test');
const dir = mkdtempSync(join(tmpdir(), 'posttrain-page-'));
let server: Server;
let url: string;
let browser: Browser;

async function open(query: string): Promise<Page> {
  const page = await browser.newPage({ acceptDownloads: true, viewport: { width: 1100, height: 900 } });
  await page.goto(`${url}?${query}`);
  return page;
}

async function finished(page: Page, timeout: number): Promise<PageState> {
  await page.waitForFunction(() => ['done', 'error'].includes((window as unknown as { posttrain?: PageState }).posttrain?.state ?? ''), null, { timeout, polling: 500 });
  return page.evaluate(() => (window as unknown as { posttrain: PageState }).posttrain);
}

/** Clicks every link in `selector`, saves the files into a new directory, returns it. */
async function download(page: Page, selector: string): Promise<string> {
  const out = mkdtempSync(join(dir, 'adapter-'));
  for (const link of await page.locator(selector).all()) {
    const [file] = await Promise.all([page.waitForEvent('download'), link.click()]);
    await file.saveAs(join(out, file.suggestedFilename()));
  }
  return out;
}

/** The adapter in `adapterDir` loaded in Node onto the tiny base: its config and held-out exact match. */
async function loadInNode(adapterDir: string, heldOut: number): Promise<{ r: number; accuracy: number }> {
  await initBackend('cpu');
  const model = await loadModel(TINY_BASE_DIR);
  const config = await loadAdapter(model, adapterDir);
  const { test } = generateSplit(reversalTask, 0, { train: 20_000, test: heldOut, taskOptions: { alphabet: 'abcdefgh', minLength: 3, maxLength: 4 }, uniqueTrain: false });
  const { accuracy } = await exactMatch(model, await loadTokenizer(TINY_BASE_DIR), reversalTask, test, { maxNewTokens: 8 });
  model.dispose();
  return { r: config.r, accuracy };
}

// Skipped without Debian's chromium, except in CI (.ci/run installs it), where that fails.
describe.skipIf(!existsSync(chromiumPath) && process.env.CI !== 'true')('the in-browser fine-tuning page', () => {
  beforeAll(async () => {
    await buildPage(join(dir, 'page'));
    ({ server, url } = await servePage(join(dir, 'page')));
    mkdirSync(shots, { recursive: true });
    if (process.env.VK_ICD_FILENAMES === undefined && existsSync(swiftShader)) process.env.VK_ICD_FILENAMES = swiftShader;
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      executablePath: chromiumPath,
      args: [
        '--headless',
        '--no-sandbox',
        '--enable-unsafe-webgpu',
        '--enable-features=Vulkan',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
        '--disable-quic',
      ],
    });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('fine-tunes on wasm: exact match rises, and the downloaded adapter gives the same answers in Node', async () => {
    const page = await open('backend=wasm&steps=150&heldout=50&snapshot=50&autostart=1');
    const state = await finished(page, 240_000);
    await page.screenshot({ path: join(shots, 'wasm.png'), fullPage: true });
    console.log(
      `wasm: exact match ${state.before?.exactMatch} → ${state.after?.exactMatch}, answer-token accuracy ${state.before?.tokenAccuracy.toFixed(3)} → ${state.after?.tokenAccuracy.toFixed(3)}, loss ${state.losses[0]?.toFixed(3)} → ${state.losses.at(-1)?.toFixed(3)}`,
    );
    expect(state.error).toBeUndefined();
    expect(state.backend).toBe('wasm');
    expect(state.losses).toHaveLength(150);
    expect(state.losses.at(-1)).toBeLessThan(state.losses[0] / 3);
    expect(state.snapshots).toEqual([50, 100]);
    // 0% → 30% held-out exact match after 150 steps (answer tokens 4.8% → 81.9%); 600 steps reach 99.5% in Node.
    expect(state.after!.exactMatch).toBeGreaterThanOrEqual(state.before!.exactMatch + 0.2);
    expect(state.after!.tokenAccuracy).toBeGreaterThan(state.before!.tokenAccuracy + 0.3);
    expect(await page.locator('#chart polyline').getAttribute('points')).toMatch(/^([\d.]+,[\d.]+ ){149}[\d.]+,[\d.]+$/);
    const adapter = await download(page, '#downloads a');
    // Greedy answers in Node (cpu) against the browser's wasm: a near-tie may flip, nothing more.
    expect(Math.abs((await loadInNode(adapter, 50)).accuracy - state.after!.exactMatch)).toBeLessThanOrEqual(0.04);
    await page.close();
  }, 300_000);

  it('fine-tunes on WebGPU (SwiftShader): the loss falls and the answer tokens get more accurate', async () => {
    const page = await open('backend=webgpu&steps=12&heldout=20&snapshot=0&autostart=1');
    const state = await finished(page, 280_000);
    await page.screenshot({ path: join(shots, 'webgpu.png'), fullPage: true });
    if (state.backend !== 'webgpu') {
      // No WebGPU adapter at all on this machine: the page must say so and train on wasm.
      expect(await page.locator('#backend-note').textContent()).toMatch(/training on WebAssembly instead/);
      return;
    }
    console.log(
      `webgpu (${state.adapter}): answer-token accuracy ${state.before?.tokenAccuracy.toFixed(3)} → ${state.after?.tokenAccuracy.toFixed(3)}, loss ${state.losses[0]?.toFixed(3)} → ${state.losses.at(-1)?.toFixed(3)}`,
    );
    expect(state.error).toBeUndefined();
    expect(state.losses).toHaveLength(12);
    expect(state.losses.at(-1)).toBeLessThan(state.losses[0] * 0.8);
    expect(state.after!.tokenAccuracy).toBeGreaterThan(state.before!.tokenAccuracy + 0.05);
    expect(await page.locator('#backend').textContent()).toMatch(/^WebGPU/);
    await page.close();
  }, 300_000);

  it('says when it is not on WebGPU, and a snapshot offered mid-training is complete after the tab is closed', async () => {
    const page = await open('backend=auto&steps=400&heldout=4&snapshot=10&autostart=1');
    // auto takes only a hardware WebGPU adapter; SwiftShader is software, so the page falls back and says why.
    await page.waitForFunction(() => (window as unknown as { posttrain?: PageState }).posttrain?.backend !== undefined, null, { timeout: 60_000 });
    const note = await page.locator('#backend-note').textContent();
    const { backend } = await page.evaluate(() => (window as unknown as { posttrain: PageState }).posttrain);
    if (backend === 'wasm') expect(note).toMatch(/^— (no hardware WebGPU adapter was found|this browser has no WebGPU|WebGPU did not start).*; training on WebAssembly instead \(slower\)\.$/);
    await page.locator('#snapshots a').first().waitFor({ timeout: 120_000 });
    const snapshot = await download(page, '#snapshots span:first-of-type a');
    await page.close(); // mid-training
    expect(readdirSync(snapshot).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    expect((await loadInNode(snapshot, 4)).r).toBe(16); // both files whole: the config parses and every weight loads
  }, 300_000);

  it('shows a model that fails to load on the page, not only in the console', async () => {
    const page = await open('backend=wasm&model=./no-such-model/');
    const state = await finished(page, 60_000);
    expect(state.state).toBe('error');
    const box = page.locator('#error');
    expect(await box.isVisible()).toBe(true);
    expect(await box.textContent()).toMatch(/^Something went wrong: .*no-such-model.*config\.json/);
    await page.screenshot({ path: join(shots, 'error.png') });
    await page.close();
  }, 120_000);
});
