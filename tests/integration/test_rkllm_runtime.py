"""The RKLLM binding driven through a C library with the runtime's 1.2.3 ABI.

Rockchip's librkllmrt.so only exists on its boards, so the tests compile a stand-in from the
header's documented layout (tests/rkllm/fake_rkllm.c) and run Parley's real ctypes binding
against it: the structs, the calls, the callback thread, abort, and the version checks.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from pathlib import Path

import pytest

from engines.errors import ModelError, ParleyError
from engines.rkllm import abi
from engines.rkllm.library import Library, open_library, search_path
from engines.rkllm.runtime import Runtime, Setup
from tests.rkllm import fake

SETUP = Setup(max_context_len=4096, max_new_tokens=512, enabled_cpus_num=4,
              enabled_cpus_mask=0xF0, n_batch=2, embed_flash=True, temperature=0.7,
              top_k=40, top_p=0.95, repeat_penalty=1.0)


@pytest.fixture(scope="module")
def libraries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The stand-in built as each runtime version Parley must tell apart."""
    root = tmp_path_factory.mktemp("rkllm")
    return {
        "1.2.3": fake.build(root / "v123"),
        "no banner": fake.build(root / "plain", "FAKE_NO_BANNER"),
        "1.3.0": fake.build(root / "v130", 'FAKE_VERSION="1.3.0"'),
        "1.1.4": fake.build(root / "v114", "FAKE_V11", 'FAKE_VERSION="1.1.4"'),
        "1.1 no banner": fake.build(root / "v11plain", "FAKE_V11", "FAKE_NO_BANNER"),
    }


@pytest.fixture
def library(libraries: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Library:
    monkeypatch.setenv("PARLEY_RKLLM_LIB", str(libraries["1.2.3"]))
    return open_library()


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A model file (the runtime checks it; the stand-in only that it is there)."""
    path = tmp_path / "qwen2.5-1.5b-instruct_w8a8_rk3588.rkllm"
    path.write_bytes(b"RKLLM model")
    return path


@pytest.fixture
def runtime(library: Library, model: Path) -> Iterator[Runtime]:
    loaded = Runtime(library, model, SETUP)
    yield loaded
    loaded.close()


def test_every_struct_field_lands_where_c_puts_it(libraries: dict[str, Path]) -> None:
    library = libraries["1.2.3"]
    checked = 0
    for c_name, struct in abi.STRUCTS.items():
        assert ctypes.sizeof(struct) == fake.offset(library, c_name), c_name
        for field, *_ in struct._fields_:
            members = ([name for name, *_ in abi._InputUnion._fields_] if field == "_u"
                       else [field])
            for member in members:
                where = fake.offset(library, f"{c_name}.{member}")
                assert where >= 0, f"the C side does not know {c_name}.{member}"
                assert getattr(struct, member).offset == where, f"{c_name}.{member}"
                checked += 1
    assert checked == fake.SOURCE.read_text().count("FIELD(") - 1  # all C has (less its macro)


def test_the_runtime_is_given_the_settings_parley_chose(runtime: Runtime, model: Path,
                                                        libraries: dict[str, Path]) -> None:
    seen = fake.report(libraries["1.2.3"])
    assert f"model_path={model} max_context_len=4096 max_new_tokens=512 top_k=40 n_keep=0 " \
           "top_p=0.95 temperature=0.70 repeat_penalty=1.00" in seen  # n_keep: the default
    # fields after the bools and pointers, and the nested extend_param, land too
    assert "skip_special_token=1 is_async=0 img_start=(null) base_domain_id=0 embed_flash=1 " \
           "enabled_cpus_num=4 enabled_cpus_mask=0xF0 n_batch=2 use_cross_attn=0" in seen
    assert runtime.library.version == "1.2.3"


def test_a_prompt_arrives_intact_and_the_reply_streams_in_order(
        runtime: Runtime, libraries: dict[str, Path]) -> None:
    prompt = 'Grüße aus 東京 — "quoted", a tab\there,\nand a second line. Ça va? 🙂'
    pieces = list(runtime.run(prompt, keep_history=True))
    seen = fake.report(libraries["1.2.3"])
    assert seen.endswith(f"prompt={prompt}")
    assert "role=user enable_thinking=0 input_type=0 mode=0 keep_history=1" in seen
    assert len(pieces) > 20  # streamed, not handed over at the end
    assert "".join(pieces) == f"You said: {prompt}"  # in order, whole characters only
    assert runtime.perf is not None and runtime.perf.generate_tokens == len(pieces)
    assert runtime.perf.memory_mb == pytest.approx(123.5)


def test_stopping_the_stream_aborts_the_run(runtime: Runtime) -> None:
    words = "word " * 2000  # 3,350 pieces, about seven seconds at the stand-in's pace
    run = runtime.run(words)
    first = [next(run) for _ in range(3)]
    run.close()  # what barge-in and Stop do
    assert "".join(first) == "You said:"
    assert runtime.perf is not None and runtime.perf.generate_tokens < 100
    assert "".join(runtime.run("again")) == "You said: again"  # the runtime is free


def test_a_model_the_runtime_refuses_is_explained(library: Library, tmp_path: Path) -> None:
    with pytest.raises(ModelError) as refused:
        Runtime(library, tmp_path / "missing.rkllm", SETUP)
    assert "refused the model" in refused.value.message
    assert "rkllm_init returned -1" in refused.value.message
    assert "converted for" in refused.value.hint


def test_a_run_the_runtime_fails_is_explained(library: Library, model: Path) -> None:
    small = Runtime(library, model, Setup(max_context_len=16, max_new_tokens=8,
                                          enabled_cpus_num=4, enabled_cpus_mask=0xF0))
    try:
        with pytest.raises(ParleyError) as failed:
            list(small.run("a prompt far longer than sixteen tokens of context " * 3))
        assert "failed while answering" in failed.value.message
        assert "context of 16 tokens" in failed.value.message
        assert "Start a new conversation" in failed.value.hint
    finally:
        small.close()


def test_a_lora_adapter_that_is_not_there_is_explained(runtime: Runtime, tmp_path: Path
                                                       ) -> None:
    with pytest.raises(ModelError, match="could not load the LoRA adapter"):
        runtime.load_lora(tmp_path / "nope.rkllm", "style", 1.0)
    adapter = tmp_path / "style.rkllm"
    adapter.write_bytes(b"lora")
    runtime.load_lora(adapter, "style", 0.5)


@pytest.mark.parametrize("variant, says", [
    ("1.3.0", "RKLLM runtime 1.3.0; Parley speaks runtime 1.2.1 to 1.2.3, and its structs"),
    ("1.1.4", "RKLLM runtime 1.1.4; Parley speaks runtime 1.2.1 to 1.2.3, and it predates"),
    ("1.1 no banner", "older than 1.2 (it has no rkllm_set_chat_template)"),
])
def test_a_runtime_of_another_version_is_refused(libraries: dict[str, Path], variant: str,
                                                 says: str, monkeypatch: pytest.MonkeyPatch
                                                 ) -> None:
    monkeypatch.setenv("PARLEY_RKLLM_LIB", str(libraries[variant]))
    with pytest.raises(ModelError) as refused:
        open_library()
    assert says in refused.value.message
    assert "release-v1.2.3" in refused.value.hint


def test_a_runtime_without_a_banner_is_judged_by_its_functions(
        libraries: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("PARLEY_RKLLM_LIB", str(libraries["no banner"]))
    assert open_library().version == "1.2.x"
    assert "carries no version banner" in caplog.text


def test_the_library_is_looked_for_where_docs_say_and_missing_is_explained(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PARLEY_RKLLM_LIB", raising=False)
    places = [str(p) for p in search_path()]
    assert places[0].endswith("/libs/" + __import__("platform").machine() + "/librkllmrt.so")
    assert places[1:] == ["/usr/lib/librkllmrt.so", "/usr/local/lib/librkllmrt.so"]
    with pytest.raises(ModelError) as missing:
        open_library()
    assert "is not on this machine" in missing.value.message
    assert "the system loader's path" in missing.value.message
    assert "only on Rockchip RK3588, RK3576 and RK3562 boards" in missing.value.hint
    monkeypatch.setenv("PARLEY_RKLLM_LIB", str(tmp_path / "nothing.so"))
    assert search_path()[0] == tmp_path / "nothing.so"
    with pytest.raises(ModelError, match="which is not a file"):
        open_library()
