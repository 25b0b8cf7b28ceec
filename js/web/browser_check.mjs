// Drive the web page in a real headless Chromium (Debian's, via playwright-core): load the model, generate greedily,
// print the new token ids as JSON and save a screenshot. Used by the tests; also a quick check by hand:
//   python js/web/serve.py OUT_DIR --port 8765 &  node js/web/browser_check.mjs http://127.0.0.1:8765 "Once upon" 32 shot.png
// 在真实的无头 Chromium 中打开页面、生成并截图。
import { chromium } from "playwright-core";

const [url, prompt, maxNewTokens = "32", screenshot = "", chat = ""] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 700 } });
  const errors = [];
  page.on("pageerror", (error) => errors.push(String(error)));
  await page.goto(url);
  await page.waitForFunction(() => !document.getElementById("generate").disabled
    || document.getElementById("status").textContent.startsWith("Error"), null, { timeout: 120000 });
  const status = await page.textContent("#status");
  if (status.startsWith("Error")) throw new Error(status);
  await page.fill("#prompt", prompt);
  await page.fill("#max-new-tokens", maxNewTokens);
  if (chat) await page.check("#chat");
  await page.click("#generate");
  await page.waitForFunction(() => document.getElementById("status").textContent.startsWith("Done")
    || document.getElementById("status").textContent.startsWith("Error"), null, { timeout: 120000 });
  const done = await page.textContent("#status");
  if (done.startsWith("Error")) throw new Error(done);
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({
    new_ids: JSON.parse(await page.textContent("#tokens")), output: await page.textContent("#output"), status: done,
    errors,
  }));
} finally {
  await browser.close();
}
