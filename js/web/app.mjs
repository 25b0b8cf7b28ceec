// The page's logic: load the exported model served under /model/ (see serve.py) and stream a generation into #output.
// 浏览器页面：加载 /model/ 下的导出模型，点击按钮后流式显示生成结果。
import { AutoModelForCausalLM, AutoTokenizer, env } from "@huggingface/transformers";
import { generate } from "../lib.mjs";

env.allowRemoteModels = false;
env.allowLocalModels = true;
env.localModelPath = "/";
env.useBrowserCache = false;
const ort = "/js/node_modules/onnxruntime-web/dist/";
env.backends.onnx.wasm.wasmPaths = { mjs: `${ort}ort-wasm-simd-threaded.asyncify.mjs`, wasm: `${ort}ort-wasm-simd-threaded.asyncify.wasm` };
env.backends.onnx.wasm.numThreads = 1; // threads need a cross-origin-isolated page

const $ = (id) => document.getElementById(id);
const dtype = new URLSearchParams(location.search).get("dtype") ?? "fp32";
let tokenizer, model;

async function init() {
  tokenizer = await AutoTokenizer.from_pretrained("model");
  model = await AutoModelForCausalLM.from_pretrained("model", { dtype, device: "wasm" });
  $("status").textContent = `Model loaded (${dtype}).`;
  $("generate").disabled = false;
}

async function run() {
  $("generate").disabled = true;
  const options = {
    prompt: $("prompt").value, chat: $("chat").checked, maxNewTokens: Number($("max-new-tokens").value),
    doSample: $("do-sample").checked, temperature: Number($("temperature").value), topK: Number($("top-k").value),
    topP: Number($("top-p").value),
  };
  const output = $("output");
  output.innerHTML = "";
  if (!options.chat) {
    const span = document.createElement("span");
    span.className = "prompt";
    span.textContent = options.prompt;
    output.append(span);
  }
  $("status").textContent = "Generating…";
  const started = performance.now();
  const result = await generate(tokenizer, model, options, (text) => output.append(text));
  const seconds = (performance.now() - started) / 1000;
  $("tokens").textContent = JSON.stringify(result.newIds);
  $("status").textContent = `Done: ${result.newIds.length} tokens in ${seconds.toFixed(1)} s.`;
  $("generate").disabled = false;
}

$("generate").addEventListener("click", () => run().catch((error) => { $("status").textContent = `Error: ${error}`; }));
init().catch((error) => { $("status").textContent = `Error while loading the model: ${error}`; });
