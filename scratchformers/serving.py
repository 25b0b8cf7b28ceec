"""An OpenAI-compatible server for a trained model: `scratchformers serve MODEL`.

Endpoints: `GET /v1/models`, `POST /v1/chat/completions` (the model's chat template), `POST /v1/completions`
(BOS + the prompt), streamed as server-sent events or not, with `temperature`, `top_p`, `max_tokens`, `stop`, `seed`
and token usage; `GET /health`. Requests are batched by transformers' continuous batching
(`model.init_continuous_batching()`): each request joins the running batch as it arrives and leaves it when it ends,
so 32 clients share each forward pass instead of waiting in a queue. Errors are OpenAI's JSON
(`{"error": {"message", "type", "param", "code"}}`) with the status OpenAI uses.

`transformers serve` cannot load remote-code models (it resolves `config.architectures[0]` on the `transformers`
module), and its internals change from one minor release to the next; this module uses the stable parts (the
continuous batching manager, the tokenizer's chat template) and FastAPI.
一个兼容 OpenAI 接口的推理服务：连续批处理，流式/非流式输出，错误格式与 OpenAI 一致。
"""

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM, ContinuousBatchingConfig, GenerationConfig
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from .families import FAMILIES
from .generation import chat_stop_token_ids, prompt_ids
from .tokenization_scratch import load_tokenizer
from .training.common import load_config, load_pretrained

logger = logging.getLogger(__name__)
MAX_STOP_SEQUENCES = 4  # as OpenAI
# OpenAI options this server does not implement, with the value that means "off": any other value is refused rather
# than silently ignored
UNSUPPORTED = {"logprobs": (None, False), "top_logprobs": (None, 0), "echo": (None, False), "best_of": (None, 1),
               "presence_penalty": (None, 0), "frequency_penalty": (None, 0), "tools": (None, []), "suffix": (None, "")}


class APIError(Exception):
    """A request the server refuses: becomes `{"error": {...}}` with `status`, as OpenAI answers."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclass
class Finished:
    """The end of an answer: OpenAI's finish_reason ("stop" or "length") and the tokens generated."""

    reason: str
    tokens: int


@dataclass
class Sampling:
    """What one request asks for, checked: OpenAI's names and ranges."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


class Engine:
    """A causal LM, its tokenizer and transformers' continuous batching manager, shared by all requests.

    一个模型 + 分词器 + 连续批处理管理器，所有请求共用。
    """

    def __init__(self, model_name_or_path: str, served_model_name: str | None = None, device: str = "auto",
                 dtype: str = "auto", max_concurrent_requests: int = 32, max_batch_tokens: int | None = None):
        if max_concurrent_requests < 1:
            raise ValueError(f"max_concurrent_requests must be at least 1, got {max_concurrent_requests}")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype, None)
        if not isinstance(torch_dtype, (str, torch.dtype)):
            raise ValueError(f"unknown dtype {dtype!r}: use auto, float32, bfloat16 or float16")
        self.name = served_model_name or str(model_name_or_path).rstrip("/")
        config = load_config(model_name_or_path)
        if not (FAMILIES[config.model_type].is_decoder if config.model_type in FAMILIES else
                config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES):
            raise ValueError(f"{model_name_or_path} is not a causal language model (model_type "
                             f"{config.model_type!r}), so it cannot be served for completions")
        self.tokenizer = load_tokenizer(model_name_or_path)
        self.model = load_pretrained(model_name_or_path, AutoModelForCausalLM, config=config,
                                     dtype=torch_dtype).to(device).eval()
        if len(self.tokenizer) > self.model.config.vocab_size:
            raise ValueError(f"the tokenizer of {model_name_or_path} has {len(self.tokenizer)} tokens but the model's "
                             f"vocab_size is {self.model.config.vocab_size}")
        self.context = self.model.config.max_position_embeddings
        self.created = int(time.time())
        self.stop_token_ids = chat_stop_token_ids(self.tokenizer)  # EOS and, with our chat template, <|im_end|>
        # Sampling settings become per-request only for the processors that exist when the manager starts, and a
        # processor exists only for a value that changes something (temperature != 1, top_p < 1, top_k > 0): start it
        # with such values; every request then passes its own (a greedy request: top_k=1).
        generation_config = GenerationConfig(
            do_sample=True, temperature=0.5, top_p=0.5, top_k=self.model.config.vocab_size,
            max_new_tokens=self.context, eos_token_id=self.stop_token_ids,
            pad_token_id=self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0,
        )
        # The paged KV cache holds `max_concurrent_requests` full contexts; left to itself, transformers sizes it from
        # free memory (on a CPU: most of the RAM, and a first request that waits while it is zeroed)
        page_size = min(256, self.context)
        batching = ContinuousBatchingConfig(
            per_request_processors=True, page_size=page_size, max_requests_per_batch=max_concurrent_requests,
            num_blocks=max_concurrent_requests * -(-self.context // page_size),
            max_batch_tokens=max_batch_tokens or max(512, min(self.context, 2048)),
        )
        self.manager = self.model.init_continuous_batching(generation_config=generation_config,
                                                           continuous_batching_config=batching)
        self.manager.start()
        self.running = 0  # requests in the batch or waiting for it, for /health
        self.cancelled = 0  # requests taken out before their end (a client gone, a stop string)

    def stop(self) -> None:
        self.manager.stop(block=True)

    # ---- prompts -------------------------------------------------------------------------------------------------
    def chat_prompt(self, messages) -> list[int]:
        if not isinstance(messages, list) or not messages:
            raise APIError(400, "messages must be a non-empty list of {role, content} objects", "messages")
        conversation = []
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise APIError(400, f"messages[{i}] must be an object with a role and a content", f"messages[{i}]")
            content = message.get("content")
            if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
                if not all(isinstance(part, dict) and part.get("type") == "text" for part in content):
                    raise APIError(400, f"messages[{i}].content: this model reads text parts only",
                                   f"messages[{i}].content")
                content = "".join(part.get("text", "") for part in content)
            if not isinstance(content, str):
                raise APIError(400, f"messages[{i}].content must be a string", f"messages[{i}].content")
            conversation.append({"role": message["role"], "content": content})
        if not self.tokenizer.chat_template:
            raise APIError(400, f"the model {self.name} has no chat template: use /v1/completions", "messages")
        return list(self.tokenizer.apply_chat_template(conversation, add_generation_prompt=True, return_dict=True)[
            "input_ids"])

    def completion_prompt(self, prompt) -> list[int]:
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise APIError(400, "prompt must be a string (one prompt per request)", "prompt")
        return prompt_ids(self.tokenizer, prompt)[0].tolist()

    def sampling(self, body: dict, prompt_length: int) -> Sampling:
        """The request's settings, checked; `max_tokens` defaults to the room left in the context."""
        for name, off in UNSUPPORTED.items():
            if body.get(name) not in off:
                raise APIError(400, f"{name} is not supported by this server (got {body[name]!r})", name)
        room = self.context - prompt_length
        if room <= 0:
            raise APIError(400, f"the prompt is {prompt_length} tokens, but this model's context is {self.context} "
                                "tokens, prompt and answer together", "messages", "context_length_exceeded")
        # `transformers chat` sends its settings as `generation_config`, a JSON GenerationConfig: its
        # max_new_tokens is a default to fit in the context, not a demand, and do_sample=False means greedy
        extra = body.get("generation_config")
        if extra is not None:
            try:
                extra = json.loads(extra) if isinstance(extra, str) else dict(extra)
            except (json.JSONDecodeError, TypeError, ValueError):
                raise APIError(400, "generation_config must be a JSON object", "generation_config") from None
            body = {**body}
            if body.get("temperature") is None:
                body["temperature"] = 0.0 if extra.get("do_sample") is False else extra.get("temperature")
            if body.get("top_p") is None:
                body["top_p"] = extra.get("top_p")
            if body.get("max_tokens") is None and isinstance(extra.get("max_new_tokens"), int):
                body["max_tokens"] = max(1, min(extra["max_new_tokens"], room))
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        if max_tokens is None:
            max_tokens = room
        elif isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens <= 0:
            raise APIError(400, f"max_tokens must be a positive integer, got {max_tokens!r}", "max_tokens")
        elif max_tokens > room:
            raise APIError(400, f"this model's context is {self.context} tokens; the prompt is {prompt_length} and "
                                f"max_tokens is {max_tokens}: lower max_tokens to at most {room}", "max_tokens",
                           "context_length_exceeded")
        temperature = _number(body, "temperature", 1.0, 0.0, 2.0)
        top_p = _number(body, "top_p", 1.0, 0.0, 1.0)
        if top_p == 0:
            raise APIError(400, "top_p must be greater than 0", "top_p")
        stop = body.get("stop")
        stop = (stop,) if isinstance(stop, str) else tuple(stop or ())
        if len(stop) > MAX_STOP_SEQUENCES or not all(isinstance(s, str) and s for s in stop):
            raise APIError(400, f"stop must be a string or a list of at most {MAX_STOP_SEQUENCES} non-empty strings, "
                                f"got {body.get('stop')!r}", "stop")
        seed = body.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise APIError(400, f"seed must be an integer, got {seed!r}", "seed")
        if body.get("n", 1) != 1:
            raise APIError(400, f"n must be 1 (one choice per request), got {body.get('n')!r}", "n")
        return Sampling(max_tokens, temperature, top_p, stop, seed)

    # ---- generation ----------------------------------------------------------------------------------------------
    async def tokens(self, prompt: list[int], sampling: Sampling) -> AsyncIterator[list[int]]:
        """The new token ids as the batch produces them. Leaving the loop early (a client that went away, a stop
        string) takes the request out of the batch."""
        request_id = f"req-{uuid.uuid4().hex}"
        outputs: asyncio.Queue = asyncio.Queue()
        if sampling.temperature == 0:  # greedy: the one most likely token
            per_request = dict(top_k=1, temperature=1.0, top_p=1.0)
        else:
            per_request = dict(top_k=self.model.config.vocab_size, temperature=sampling.temperature,
                               top_p=sampling.top_p)
        self.manager.register_result_handler(request_id, outputs.put_nowait)
        if sampling.seed is not None:  # best effort, as OpenAI's: exact when the request runs alone
            await self._drain_leftovers()
            torch.manual_seed(sampling.seed)
        added = self.manager.add_request(prompt, request_id=request_id, max_new_tokens=sampling.max_tokens,
                                         streaming=True, eos_token_id=self.stop_token_ids, **per_request)
        if added is None:  # the manager is stopping, or its generation thread died
            raise APIError(503, "the model cannot take requests now; try again later", type="server_error")
        self.running += 1
        sent, finished = 0, False
        try:
            while not finished:
                output = await outputs.get()
                if output.error:
                    raise RuntimeError(f"generation failed: {output.error}")
                finished = output.is_finished()
                new = output.generated_tokens[sent:]
                sent += len(new)
                if new:
                    yield new
        finally:
            self.running -= 1
            if not finished:
                self.cancelled += 1
                self.manager.cancel_request(request_id)
                router = self.manager.output_router  # the handler of a cancelled request is not removed for us
                with router._lock:
                    router.result_handlers.pop(request_id, None)

    async def _drain_leftovers(self, timeout: float = 2.0) -> None:
        """With no live request, wait (a little) until the batch is empty: a request cancelled a moment ago (a stop
        string, a client gone) may still take a step, drawing random numbers after a new request's seed. With live
        requests, nothing is waited for: they share the random numbers anyway, and seeds never serialise clients."""
        processor = self.manager.batch_processor
        deadline = time.monotonic() + timeout
        while (self.running == 0 and time.monotonic() < deadline and processor is not None
               and (processor.has_pending_requests() or not self.manager.cancel_queue.empty())):
            await asyncio.sleep(0.005)

    async def text(self, prompt: list[int], sampling: Sampling) -> AsyncIterator[str | Finished]:
        """The answer's new text as it comes, then why it ended (`Finished`). Text that could begin a stop string
        is held back until it is known not to; the answer ends before the first stop string."""
        ids: list[int] = []
        shown = ""
        async for new in self.tokens(prompt, sampling):
            ids += new
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
                continue
            cut = min((i for i in (text.find(s) for s in sampling.stop) if i >= 0), default=-1)
            if cut >= 0:
                if cut > len(shown):
                    yield text[len(shown):cut]
                yield Finished("stop", len(ids))
                return
            hold = max((_overlap(text, s) for s in sampling.stop), default=0)
            if len(text) - hold > len(shown):
                yield text[len(shown):len(text) - hold]
                shown = text[:len(text) - hold]
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        if len(text) > len(shown):
            yield text[len(shown):]
        ended_by_model = bool(ids) and ids[-1] in self.stop_token_ids
        yield Finished("stop" if ended_by_model or len(ids) < sampling.max_tokens else "length", len(ids))


def _number(body: dict, name: str, default: float, low: float, high: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise APIError(400, f"{name} must be a number from {low:g} to {high:g}, got {value!r}", name)
    return float(value)


def _overlap(text: str, stop: str) -> int:
    """The length of the longest end of `text` that is a beginning of `stop`."""
    for n in range(min(len(stop) - 1, len(text)), 0, -1):
        if text.endswith(stop[:n]):
            return n
    return 0


def build_app(engine: Engine, api_key: str | None = None):
    """The FastAPI app of `engine`: OpenAI's routes, OpenAI's errors; with `api_key`, the /v1 routes want
    `Authorization: Bearer <api_key>` (the `openai` client's `api_key`).

    构建 FastAPI 应用：OpenAI 的路由与错误格式。
    """
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.exceptions import HTTPException

    app = FastAPI(title=f"scratchformers: {engine.name}")

    @app.exception_handler(APIError)
    async def api_error(_request, error: APIError):
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(HTTPException)
    async def http_error(_request, error: HTTPException):  # unknown route, wrong method
        return JSONResponse(APIError(error.status_code, str(error.detail)).body(), status_code=error.status_code)

    @app.exception_handler(Exception)
    async def server_error(_request, error: Exception):  # a failed generation: still OpenAI's shape
        logger.exception("request failed")
        return JSONResponse(APIError(500, f"{type(error).__name__}: {error}", type="server_error").body(),
                            status_code=500)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request, error: RequestValidationError):
        return JSONResponse(APIError(400, str(error)).body(), status_code=400)

    def check_key(request: Request) -> None:
        if api_key is not None and request.headers.get("authorization") != f"Bearer {api_key}":
            raise APIError(401, "invalid or missing API key (Authorization: Bearer ...)", code="invalid_api_key")

    async def read_body(request: Request) -> dict:
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise APIError(400, f"the request body is not valid JSON ({error})") from None
        if not isinstance(body, dict):
            raise APIError(400, "the request body must be a JSON object")
        check_key(request)
        model = body.get("model")
        if model != engine.name:
            raise APIError(404, f"the model {model!r} does not exist: this server serves {engine.name!r}", "model",
                           "model_not_found")
        return body

    def usage(prompt: list[int], completion_tokens: int) -> dict:
        return {"prompt_tokens": len(prompt), "completion_tokens": completion_tokens,
                "total_tokens": len(prompt) + completion_tokens}

    async def answer(body: dict, prompt: list[int], chat: bool):
        sampling = engine.sampling(body, len(prompt))
        created, kind = int(time.time()), ("chatcmpl" if chat else "cmpl")
        response_id = f"{kind}-{uuid.uuid4().hex}"
        obj = "chat.completion" if chat else "text_completion"

        def choice(text: str | None, finish_reason: str | None, stream: bool) -> dict:
            if not chat:
                return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish_reason}
            key = "delta" if stream else "message"
            message = {} if text is None else {"content": text}
            if not stream:
                message = {"role": "assistant", "content": text or ""}
            return {"index": 0, key: message, "logprobs": None, "finish_reason": finish_reason}

        if not body.get("stream"):
            pieces = [piece async for piece in engine.text(prompt, sampling)]
            end = pieces.pop()
            return JSONResponse({"id": response_id, "object": obj, "created": created, "model": engine.name,
                                 "choices": [choice("".join(pieces), end.reason, False)],
                                 "usage": usage(prompt, end.tokens)})

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def event(choices: list, extra: dict | None = None) -> str:
            chunk = {"id": response_id, "object": obj + (".chunk" if chat else ""), "created": created,
                     "model": engine.name, "choices": choices, **(extra or {})}
            return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

        async def events():
            if chat:
                yield event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                              "finish_reason": None}])
            async for piece in engine.text(prompt, sampling):
                if isinstance(piece, Finished):
                    end = piece
                else:
                    yield event([choice(piece, None, True)])
            yield event([choice(None if chat else "", end.reason, True)])
            if include_usage:
                yield event([], {"usage": usage(prompt, end.tokens)})
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.get("/v1/models")
    async def models(request: Request):
        check_key(request)
        return {"object": "list", "data": [{"id": engine.name, "object": "model", "created": engine.created,
                                            "owned_by": "scratchformers"}]}

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": engine.name, "running_requests": engine.running,
                "cancelled_requests": engine.cancelled}

    @app.post("/load_model")
    async def load_model(request: Request):
        """What `transformers chat` asks first (a route of `transformers serve`): the model is loaded already."""
        try:
            model = json.loads(await request.body()).get("model")
        except (json.JSONDecodeError, AttributeError):
            model = None
        event = ({"status": "ready", "model": model, "cached": True} if model == engine.name else
                 {"status": "error", "message": f"this server serves {engine.name!r}, not {model!r}"})
        return StreamingResponse(iter([f"data: {json.dumps(event)}\n\n"]), media_type="text/event-stream")

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        body = await read_body(request)
        return await answer(body, engine.chat_prompt(body.get("messages")), chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await read_body(request)
        return await answer(body, engine.completion_prompt(body.get("prompt")), chat=False)

    return app
