// Generate text in Node.js with transformers.js from a folder written by `scratchformers export onnx`.
//
//   node js/generate.mjs OUT_DIR "Once upon a time" --max-new-tokens 32
//   node js/generate.mjs OUT_DIR "Once upon a time" --do-sample --temperature 0.8 --top-k 40 --top-p 0.9
//   node js/generate.mjs OUT_DIR "Count from 2 to 6." --chat --dtype q8
//
// The continuation is streamed token by token. `--json` prints instead one JSON line with the prompt's ids, the new
// token ids and the text (what the tests compare with PyTorch's generate()).
// 用 transformers.js 在 Node.js 中加载导出的 ONNX 模型并逐 token 流式生成。

import path from "node:path";
import { AutoModelForCausalLM, AutoTokenizer } from "@huggingface/transformers";
import { generate, useLocalFolder } from "./lib.mjs";

const USAGE = `usage: node js/generate.mjs MODEL_DIR "prompt" [--max-new-tokens N] [--do-sample] [--temperature T]
       [--top-k K] [--top-p P] [--repetition-penalty R] [--chat] [--dtype fp32|q8] [--json]`;

export function parseArgs(argv) {
  const options = {
    maxNewTokens: 32, doSample: false, temperature: 1.0, topK: 0, topP: 1.0, repetitionPenalty: 1.0,
    chat: false, dtype: "fp32", json: false,
  };
  const positional = [];
  const numbers = {
    "--max-new-tokens": "maxNewTokens", "--temperature": "temperature", "--top-k": "topK", "--top-p": "topP",
    "--repetition-penalty": "repetitionPenalty",
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg in numbers) {
      const value = Number(argv[++i]);
      if (!Number.isFinite(value)) throw new Error(`${arg} needs a number, got ${JSON.stringify(argv[i])}`);
      options[numbers[arg]] = value;
    } else if (arg === "--dtype") {
      options.dtype = argv[++i];
      if (!["fp32", "q8"].includes(options.dtype)) throw new Error(`--dtype is fp32 or q8, got ${options.dtype}`);
    } else if (arg === "--do-sample") options.doSample = true;
    else if (arg === "--chat") options.chat = true;
    else if (arg === "--json") options.json = true;
    else if (arg.startsWith("--")) throw new Error(`unknown option ${arg}\n${USAGE}`);
    else positional.push(arg);
  }
  if (positional.length !== 2) throw new Error(USAGE);
  [options.modelDir, options.prompt] = positional;
  return options;
}

export async function load(modelDir, dtype = "fp32") {
  const name = useLocalFolder(modelDir, path);
  const tokenizer = await AutoTokenizer.from_pretrained(name, { local_files_only: true });
  const model = await AutoModelForCausalLM.from_pretrained(name, { dtype, device: "cpu", local_files_only: true });
  return { tokenizer, model };
}

async function main() {
  let options;
  try {
    options = parseArgs(process.argv.slice(2));
  } catch (error) {
    console.error(error.message);
    process.exit(2);
  }
  const { tokenizer, model } = await load(options.modelDir, options.dtype);
  if (options.json) {
    const result = await generate(tokenizer, model, options);
    console.log(JSON.stringify({ prompt_ids: result.promptIds, new_ids: result.newIds, text: result.text }));
  } else {
    if (!options.chat) process.stdout.write(options.prompt);
    await generate(tokenizer, model, options, (text) => process.stdout.write(text));
    process.stdout.write("\n");
  }
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith("generate.mjs")) {
  main().catch((error) => {
    console.error(error.message ?? error);
    process.exit(1);
  });
}
