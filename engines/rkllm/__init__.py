"""Rockchip's RKLLM NPU runtime: the C ABI (`abi`), finding and identifying the library
(`library`), the calls on a loaded model (`runtime`), board profiles (`boards`) and chat
templates (`chat`). The LLM engine on top is `engines.llm_rkllm`."""
