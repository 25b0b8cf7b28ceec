"""Serve the web page with an exported model: `python js/web/serve.py OUT_DIR [--port 8000]`, then open
http://localhost:8000/ (the page is /js/web/). /model/ is OUT_DIR (from `scratchformers export onnx`), /js/ the
repository's js/ folder (the page, and transformers.js from js/node_modules, installed with `npm ci` in js/).
启动本地网页服务：/model/ 指向导出的模型目录，其余为仓库的 js/ 目录。
"""

import argparse
import functools
import http.server
from pathlib import Path

JS = Path(__file__).resolve().parents[1]


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript",
                      ".wasm": "application/wasm", ".onnx": "application/octet-stream"}

    def __init__(self, *args, model_dir: Path, **kwargs):
        self.model_dir = model_dir
        super().__init__(*args, directory=str(JS), **kwargs)

    def do_GET(self):
        if self.path.split("?", 1)[0] in ("/", "/index.html"):  # the page lives at /js/web/ (its imports are relative)
            self.send_response(302)
            self.send_header("Location", "/js/web/" + (self.path[1:] if self.path.startswith("/?") else ""))
            self.end_headers()
            return
        super().do_GET()

    def translate_path(self, path):
        path = path.split("?", 1)[0].split("#", 1)[0]
        if path.startswith("/model/"):
            return str(self.model_dir / path[len("/model/"):])
        if path.startswith("/js/"):
            return str(JS / path[len("/js/"):])
        return super().translate_path(path)

    def log_message(self, format, *args):  # quiet: one line per request is noise here
        pass


def make_server(model_dir, port: int = 8000, host: str = "127.0.0.1") -> http.server.ThreadingHTTPServer:
    model_dir = Path(model_dir).resolve()
    if not (model_dir / "onnx" / "model.onnx").is_file():
        raise SystemExit(f"{model_dir} is not an ONNX export (no onnx/model.onnx): run `scratchformers export onnx`")
    if not (JS / "node_modules" / "@huggingface" / "transformers").is_dir():
        raise SystemExit(f"transformers.js is not installed: run `npm ci` in {JS}")
    return http.server.ThreadingHTTPServer((host, port), functools.partial(Handler, model_dir=model_dir))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    server = make_server(args.model_dir, args.port)
    print(f"serving http://localhost:{args.port}/ (model: {args.model_dir}); Ctrl-C stops")
    server.serve_forever()
