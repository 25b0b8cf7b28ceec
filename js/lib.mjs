// Shared by generate.mjs (Node.js) and web/app.mjs (the browser): prompt ids and generation with transformers.js,
// the same way scratchformers.generation does it in Python (BOS + text, or the chat template; stop at <|im_end|>).
// Node 与浏览器共用的生成逻辑，与 Python 端 scratchformers.generation 一致。

import { Tensor, TextStreamer, env } from "@huggingface/transformers";

// A local folder only, never the Hub: transformers.js looks the model name (the folder's own name) up under its
// parent. Returns that name. (Node.js only: the page serves its model over HTTP.)
export function useLocalFolder(modelDir, path) {
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = path.dirname(path.resolve(modelDir)) + path.sep;
  return path.basename(path.resolve(modelDir));
}

export function promptIds(tokenizer, prompt, chat) {
  if (chat) {
    const encoded = tokenizer.apply_chat_template([{ role: "user", content: prompt }], {
      add_generation_prompt: true, tokenize: true, return_tensor: false, return_dict: true,
    });
    return encoded.input_ids;
  }
  const ids = prompt ? tokenizer.encode(prompt, { add_special_tokens: false }) : [];
  return [tokenizer.bos_token_id, ...ids];
}

// options: prompt, chat, maxNewTokens, doSample, temperature, topK, topP, repetitionPenalty
export async function generate(tokenizer, model, options, onText = null) {
  const ids = promptIds(tokenizer, options.prompt, options.chat);
  const inputIds = new Tensor("int64", BigInt64Array.from(ids.map(BigInt)), [1, ids.length]);
  const attentionMask = new Tensor("int64", new BigInt64Array(ids.length).fill(1n), [1, ids.length]);
  const stop = [tokenizer.eos_token_id];
  if (options.chat) stop.push(tokenizer.convert_tokens_to_ids("<|im_end|>"));
  const streamer = onText ? new TextStreamer(tokenizer, { skip_prompt: true, callback_function: onText }) : null;
  const sampling = options.doSample
    ? { do_sample: true, temperature: options.temperature ?? 1.0, top_k: options.topK ?? 0, top_p: options.topP ?? 1.0 }
    : { do_sample: false };
  const output = await model.generate({
    input_ids: inputIds, attention_mask: attentionMask, max_new_tokens: options.maxNewTokens ?? 32,
    repetition_penalty: options.repetitionPenalty ?? 1.0, eos_token_id: stop, streamer, ...sampling,
  });
  const newIds = Array.from(output.data, Number).slice(ids.length);
  return { promptIds: ids, newIds, text: tokenizer.decode(newIds, { skip_special_tokens: true }) };
}
