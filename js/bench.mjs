// Greedy generation for many prompts in one Node.js process (model loaded once), with the time of each:
//   node js/bench.mjs OUT_DIR prompts.json --max-new-tokens 32 --dtype fp32
// prints one JSON line: [{prompt_ids, new_ids, seconds}, ...]. Used by benchmarks/runtimes.py.
// 在一个进程中对多个提示词做贪心生成并计时（模型只加载一次）。
import { readFileSync } from "node:fs";
import { load, parseArgs } from "./generate.mjs";
import { generate } from "./lib.mjs";

const options = parseArgs(process.argv.slice(2));
const prompts = JSON.parse(readFileSync(options.prompt, "utf8"));
const { tokenizer, model } = await load(options.modelDir, options.dtype);
await generate(tokenizer, model, { ...options, prompt: prompts[0], maxNewTokens: 2 });  // warm-up
const results = [];
for (const prompt of prompts) {
  const started = performance.now();
  const result = await generate(tokenizer, model, { ...options, prompt });
  results.push({ prompt_ids: result.promptIds, new_ids: result.newIds, seconds: (performance.now() - started) / 1000 });
}
console.log(JSON.stringify(results));
