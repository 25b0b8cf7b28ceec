"""`scratchformers serve`: the OpenAI API in front of a trained model, talked to with the real `openai` client.

Greedy answers equal `model.generate()` token for token (alone and with 16 requests batched together), streaming and
not; OpenAI's errors and statuses for bad requests; a client that leaves mid-stream frees its place in the batch;
`transformers chat` talks to it; the command line starts it and refuses a model it cannot serve.
"""

import asyncio
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
import uvicorn

from conftest import train_small_model
from scratchformers.generation import chat_stop_token_ids, prompt_ids
from scratchformers.serving import Engine, build_app
from scratchformers.tokenization_scratch import load_tokenizer
from scratchformers.training.common import load_pretrained

CORPUS = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
          "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n\n") * 40


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def post_raw(port: int, path: str, body: bytes) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    status, data = response.status, json.loads(response.read())
    connection.close()
    return status, data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """Our app on a free port, in a thread of this process (uvicorn), with the model `folder` under `name` (or the
    `engine` of another server)."""

    def __init__(self, folder=None, name="tiny", engine=None, api_key=None):
        self.engine = engine or Engine(str(folder), served_model_name=name, device="cpu", max_concurrent_requests=16)
        self.owns_engine = engine is None
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(build_app(self.engine, api_key=api_key), host="127.0.0.1",
                                                    port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            assert time.time() < deadline, "the server did not start"
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.client = openai.OpenAI(base_url=self.url, api_key=api_key or "unused", max_retries=0)

    def close(self):
        self.server.should_exit = True
        self.thread.join(10)
        if self.owns_engine:
            self.engine.stop()


@pytest.fixture(scope="module", params=["llama2-tiny", "gpt-micro"])
def served(request, tmp_path_factory):
    folder = train_small_model(tmp_path_factory.mktemp(request.param), request.param, CORPUS, 300)
    server = Server(folder)
    model = load_pretrained(str(folder)).eval()
    yield server, model, load_tokenizer(str(folder))
    server.close()


def greedy(model, tokenizer, prompt_ids: list[int], max_new_tokens: int, stop_ids=None) -> list[int]:
    ids = torch.tensor([prompt_ids])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False,
                         eos_token_id=stop_ids or tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return out[0, ids.shape[1]:].tolist()


def completion_ids(tokenizer, prompt: str) -> list[int]:
    return prompt_ids(tokenizer, prompt)[0].tolist()


def chat_ids(tokenizer, text: str) -> list[int]:
    return prompt_ids(tokenizer, text, chat=True)[0].tolist()


def test_greedy_completion_equals_generate_with_usage(served):
    server, model, tokenizer = served
    prompt = "First Citizen:"
    expected = greedy(model, tokenizer, completion_ids(tokenizer, prompt), 20,
                      stop_ids=chat_stop_token_ids(tokenizer))
    answer = server.client.completions.create(model="tiny", prompt=prompt, max_tokens=20, temperature=0)
    assert answer.choices[0].text == tokenizer.decode(expected, skip_special_tokens=True)
    assert answer.usage.prompt_tokens == len(completion_ids(tokenizer, prompt))
    assert answer.usage.completion_tokens == len(expected)
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    assert answer.choices[0].finish_reason == ("length" if len(expected) == 20 else "stop")
    assert answer.object == "text_completion" and answer.model == "tiny"


def test_greedy_chat_streamed_and_not_equals_generate(served):
    server, model, tokenizer = served
    expected = greedy(model, tokenizer, chat_ids(tokenizer, "Speak"), 24, stop_ids=chat_stop_token_ids(tokenizer))
    text = tokenizer.decode(expected, skip_special_tokens=True)
    messages = [{"role": "user", "content": "Speak"}]
    answer = server.client.chat.completions.create(model="tiny", messages=messages, max_tokens=24, temperature=0)
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content == text
    assert answer.usage.completion_tokens == len(expected)

    chunks = list(server.client.chat.completions.create(model="tiny", messages=messages, max_tokens=24, temperature=0,
                                                        stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == answer.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == len(expected)  # the usage chunk comes last, with no choice
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # it did stream


def test_sixteen_concurrent_requests_are_batched_and_each_equals_generate(served):
    server, model, tokenizer = served
    prompts = [f"{name}:" for name in ("First Citizen", "All", "Speak", "You are", "Resolved", "Before we")] * 3
    prompts = prompts[:16]
    expected = [tokenizer.decode(greedy(model, tokenizer, completion_ids(tokenizer, p), 16,
                                        stop_ids=chat_stop_token_ids(tokenizer)), skip_special_tokens=True)
                for p in prompts]

    async def ask_all():
        async with openai.AsyncOpenAI(base_url=server.url, api_key="unused", max_retries=0) as client:
            answers = await asyncio.gather(*[
                client.completions.create(model="tiny", prompt=p, max_tokens=16 - i % 3 * 4, temperature=0)
                for i, p in enumerate(prompts)])
        return [a.choices[0].text for a in answers]

    answers = asyncio.run(ask_all())
    for i, (answer, full) in enumerate(zip(answers, expected)):
        assert full.startswith(answer) and len(answer) > 0, (i, answer, full)
    assert answers[0] == expected[0]


def test_stop_strings_end_the_answer_before_them(served):
    server, model, tokenizer = served
    full = tokenizer.decode(greedy(model, tokenizer, completion_ids(tokenizer, "All:"), 30,
                                   stop_ids=chat_stop_token_ids(tokenizer)), skip_special_tokens=True)
    stop = full.strip()[1:4]  # three characters from inside the greedy answer
    assert stop and stop in full
    for stream in (False, True):
        answer = server.client.completions.create(model="tiny", prompt="All:", max_tokens=30, temperature=0,
                                                  stop=[stop], stream=stream)
        if stream:
            parts = list(answer)
            text, reason = "".join(p.choices[0].text for p in parts), parts[-1].choices[0].finish_reason
        else:
            text, reason = answer.choices[0].text, answer.choices[0].finish_reason
        assert text == full[:full.index(stop)], stream
        assert reason == "stop"


def test_sampling_with_a_seed_repeats_itself_and_differs_from_greedy(served):
    server, _, _ = served

    def ask(**kwargs):
        return server.client.completions.create(model="tiny", prompt="First", max_tokens=24, **kwargs).choices[0].text

    a, b = ask(temperature=1.5, seed=123), ask(temperature=1.5, seed=123)
    assert a == b
    assert {ask(temperature=1.5, seed=s) for s in (1, 2, 3)} != {ask(temperature=0)}


def test_bad_requests_get_openai_errors_with_the_right_status(served):
    server, _, _ = served
    client = server.client
    with pytest.raises(openai.NotFoundError) as error:
        client.completions.create(model="gpt-4", prompt="x", max_tokens=2)
    assert error.value.status_code == 404 and error.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model="tiny", messages=[])
    assert error.value.body["param"] == "messages"
    long_prompt = "speak " * 400  # longer than the 128-token context
    with pytest.raises(openai.BadRequestError) as error:
        client.completions.create(model="tiny", prompt=long_prompt, max_tokens=2)
    assert error.value.body["code"] == "context_length_exceeded"
    for bad in (dict(max_tokens=0), dict(max_tokens=-3), dict(temperature=3), dict(top_p=0), dict(n=2),
                dict(max_tokens=10_000)):
        with pytest.raises(openai.BadRequestError) as error:
            client.completions.create(model="tiny", prompt="x", **bad)
        assert error.value.body["param"] == next(iter(bad)), bad
    for unsupported in ({"logprobs": True}, {"presence_penalty": 0.5}, {"echo": True}):
        with pytest.raises(openai.BadRequestError) as error:
            client.completions.create(model="tiny", prompt="x", max_tokens=2, extra_body=unsupported)
        assert error.value.body["param"] == next(iter(unsupported)) and "not supported" in error.value.message
    status, body = post_raw(server.port, "/v1/completions", b'{"model": "tiny", "prompt": ')
    assert status == 400 and "not valid JSON" in body["error"]["message"]
    with pytest.raises(urllib.error.HTTPError) as error:
        get_json(f"{server.url}/nothing-here")
    assert error.value.code == 404 and json.loads(error.value.read())["error"]["message"] == "Not Found"
    # after all that, the server still answers
    assert client.completions.create(model="tiny", prompt="x", max_tokens=2, temperature=0).usage.completion_tokens


def test_with_an_api_key_clients_without_it_are_refused(served):
    server, _, _ = served
    guarded = Server(engine=server.engine, api_key="sesame")
    try:
        assert guarded.client.completions.create(model="tiny", prompt="x", max_tokens=2, temperature=0).choices
        assert [m.id for m in guarded.client.models.list().data] == ["tiny"]
        stranger = openai.OpenAI(base_url=guarded.url, api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as error:
            stranger.completions.create(model="tiny", prompt="x", max_tokens=2)
        assert error.value.status_code == 401 and error.value.body["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            stranger.models.list()
    finally:
        guarded.close()


def test_a_client_leaving_mid_stream_frees_its_place_and_others_are_served(served):
    server, _, _ = served
    health = f"http://127.0.0.1:{server.port}/health"
    cancelled = get_json(health)["cancelled_requests"]
    body = {"model": "tiny", "prompt": "First", "max_tokens": 120, "temperature": 0, "stream": True}
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    first = response.readline().decode()
    assert first.startswith("data: ") and json.loads(first[6:])["object"] == "text_completion"
    connection.sock.close()  # the client goes away mid-stream
    connection.close()
    deadline = time.time() + 20
    while get_json(health)["running_requests"]:
        assert time.time() < deadline, "the abandoned request still runs"
        time.sleep(0.05)
    assert get_json(health)["cancelled_requests"] == cancelled + 1  # taken out of the batch, not run to its end
    assert server.client.models.list().data[0].id == "tiny"
    assert server.client.completions.create(model="tiny", prompt="x", max_tokens=3, temperature=0).choices[0].text


@pytest.mark.parametrize("served", ["llama2-tiny"], indirect=True)  # one family is enough for the chat client
def test_transformers_chat_talks_to_the_server(served):
    server, model, tokenizer = served
    expected = greedy(model, tokenizer, chat_ids(tokenizer, "Speak"), 12, stop_ids=chat_stop_token_ids(tokenizer))
    words = tokenizer.decode(expected, skip_special_tokens=True).split()
    run = subprocess.run(
        [sys.executable, "-m", "transformers.cli.transformers", "chat", "tiny", server.url, "do_sample=False",
         "max_new_tokens=12", "--user", "tester"],
        input="Speak\n!exit\n", capture_output=True, text=True, timeout=120,
        # HF_HUB_OFFLINE blocks every address for huggingface_hub's client, the local server's too
        env={**{k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}, "COLUMNS": "200", "TERM": "dumb"},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert words and all(word in run.stdout for word in words if word.isalpha()), (words, run.stdout[-2000:])


@pytest.mark.parametrize("served", ["llama2-tiny"], indirect=True)
def test_the_command_serves_and_refuses_a_model_it_cannot_serve(served, tmp_path):
    server, _, _ = served
    folder = server.engine.model.name_or_path
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "scratchformers.cli", "serve", folder, "--port", str(port),
                                "--served-model-name", "cli-model", "--log-level", "warning"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                models = get_json(f"http://127.0.0.1:{port}/v1/models")
                break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None and time.time() < deadline, process.stdout.read()
                time.sleep(0.2)
        assert [m["id"] for m in models["data"]] == ["cli-model"]
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        assert client.completions.create(model="cli-model", prompt="All:", max_tokens=4, temperature=0).choices[0].text
    finally:
        process.terminate()
        process.wait(20)

    from scratchformers import BertConfig, BertForMaskedLM

    BertForMaskedLM(BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64)).save_pretrained(tmp_path / "bert")
    load_tokenizer(folder).save_pretrained(tmp_path / "bert")
    run = subprocess.run([sys.executable, "-m", "scratchformers.cli", "serve", str(tmp_path / "bert")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "is not a causal language model" in run.stderr


@pytest.mark.parametrize("served", ["llama2-tiny"], indirect=True)
def test_llama_cpp_server_on_the_gguf_answers_our_greedy_completion(served, tmp_path):
    """`python -m llama_cpp.server --model model.gguf`: the same API, the same greedy answer, for LLaMA2."""
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        if os.environ.get("SCRATCHFORMERS_REQUIRE_GGUF") == "1":
            pytest.fail("llama-cpp-python[server] is missing, and SCRATCHFORMERS_REQUIRE_GGUF=1")
        pytest.skip("llama-cpp-python[server] is not installed")
    from scratchformers.gguf_export import export_gguf

    server, _, _ = served
    gguf = export_gguf(server.engine.model.name_or_path, tmp_path / "model.gguf", dtype="f16")
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", "tiny",
                                "--port", str(port), "--n_ctx", "128", "--n_threads", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                get_json(f"http://127.0.0.1:{port}/v1/models")
                break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None and time.time() < deadline, process.stdout.read()
                time.sleep(0.2)
        theirs = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        for prompt in ("First Citizen:", "All:", "Speak"):
            ours = server.client.completions.create(model="tiny", prompt=prompt, max_tokens=24, temperature=0)
            # llama.cpp's server penalizes repeats by default (1.1): off, for plain greedy decoding as ours
            answer = theirs.completions.create(model="tiny", prompt=prompt, max_tokens=24, temperature=0,
                                               extra_body={"repeat_penalty": 1.0})
            assert answer.choices[0].text == ours.choices[0].text, prompt
            # (token counts differ by convention: llama.cpp counts neither BOS nor the end-of-text token)
            assert answer.choices[0].finish_reason == ours.choices[0].finish_reason
    finally:
        process.terminate()
        process.wait(20)
