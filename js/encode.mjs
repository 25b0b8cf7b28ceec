// Run an encoder (BERT) exported by `scratchformers export onnx` in Node.js with transformers.js pipelines.
//
//   node js/encode.mjs OUT_DIR fill-mask "the cat is [MASK] with a ball ." [--top-k 5]
//   node js/encode.mjs OUT_DIR text-classification "a great movie" [--dtype q8]
//
// Prints the pipeline's answer as one JSON line (what the tests compare with transformers' Python pipeline).
// 在 Node.js 中运行导出的 BERT：完形填空（fill-mask）或文本分类（text-classification），输出一行 JSON。

import path from "node:path";
import { pipeline } from "@huggingface/transformers";
import { useLocalFolder } from "./lib.mjs";

const USAGE = `usage: node js/encode.mjs MODEL_DIR fill-mask|text-classification "text" [--top-k K] [--dtype fp32|q8]`;
const TASKS = ["fill-mask", "text-classification"];

export function parseArgs(argv) {
  const options = { topK: 5, dtype: "fp32" };
  const positional = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--top-k") {
      options.topK = Number(argv[++i]);
      if (!Number.isInteger(options.topK) || options.topK < 1) throw new Error(`--top-k needs a positive integer, got ${argv[i]}`);
    } else if (arg === "--dtype") {
      options.dtype = argv[++i];
      if (!["fp32", "q8"].includes(options.dtype)) throw new Error(`--dtype is fp32 or q8, got ${options.dtype}`);
    } else if (arg.startsWith("--")) throw new Error(`unknown option ${arg}\n${USAGE}`);
    else positional.push(arg);
  }
  if (positional.length !== 3) throw new Error(USAGE);
  [options.modelDir, options.task, options.text] = positional;
  if (!TASKS.includes(options.task)) throw new Error(`the task is fill-mask or text-classification, got ${options.task}`);
  return options;
}

async function main() {
  let options;
  try {
    options = parseArgs(process.argv.slice(2));
  } catch (error) {
    console.error(error.message);
    process.exit(2);
  }
  const name = useLocalFolder(options.modelDir, path);
  const run = await pipeline(options.task, name, { dtype: options.dtype, device: "cpu", local_files_only: true });
  console.log(JSON.stringify(await run(options.text, { top_k: options.topK })));
}

main().catch((error) => {
  console.error(error.message ?? error);
  process.exit(1);
});
