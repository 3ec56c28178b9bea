import asyncio, sys, ctypes, threading
def rc(tag): print(tag, sys.getrefcount(True), sys.getrefcount(False), flush=True)
def test_x(controller, tmp_path, default_models, monkeypatch):
    rc("start")
    controller.loop.run_until_complete(controller.send_text("Hi")); rc("turn1")
    controller.loop.run_until_complete(controller.send_text("Hi")); rc("turn2")
    import llama_cpp; rc("import llama")
    p = llama_cpp.llama_model_quantize_default_params(); rc("params")
    p.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0; p.allow_requantize = True; rc("set")
    llama_cpp.llama_model_quantize(str(default_models["llm"].path).encode(), str(tmp_path/"q.gguf").encode(), ctypes.byref(p)); rc("quantize")
    monkeypatch.setenv("PARLEY_MODELS_DIR", str(tmp_path / "m"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    ok = controller.loop.run_until_complete(controller.pull_model("qwen2.5-0.5b-instruct", lambda d, t: None, threading.Event())); rc("pull")
    controller.loop.run_until_complete(asyncio.sleep(2)); rc("idle")
