"""A stand-in for Rockchip's NPU runtime (`fake_rkllm.c`), and sample device trees."""
