"""GPU-free: every CUDA kernel module compiles with NVRTC for the Jetson Orin (sm_87) and the
H100 (sm_90), and the cubin cache is keyed by what changes the binary."""

from __future__ import annotations

import shutil

import pytest

from edge.kernels.cuda import compiler
from edge.kernels.cuda.elementwise import CAST_SUFFIX
from tests.cuda.conftest import ARCHES

FLOAT = ("f32", "f16")
BYTES = ("b1", "b2", "b4", "b8")

EXPECTED = {
    "elementwise": [f"{k}_{s}" for k in ("unary", "binary_flat", "conv_epilogue", "binary_bcast", "compare_bcast", "where") for s in FLOAT]
    + [f"cast_{a}_{b}" for a in CAST_SUFFIX.values() for b in CAST_SUFFIX.values()],
    "reduce": [f"{k}_{s}" for k in ("reduce", "arg_reduce", "softmax") for s in FLOAT],
    "normalization": [f"{k}_{s}" for k in ("layer_norm", "group_norm", "channel_affine") for s in FLOAT],
    "pool": [f"pool2d_{layout}_{s}" for layout in ("nchw", "nhwc") for s in FLOAT],
    "copy": [f"{k}_{b}" for k in ("strided_copy", "pad", "gather_i64", "gather_i32") for b in BYTES] + [f"resize2d_{s}" for s in FLOAT],
    "quant": [f"quantize_{s}_{q}" for s in FLOAT for q in ("i8", "u8")] + [f"dequantize_{q}_{s}" for s in FLOAT for q in ("i8", "u8")]
    + [f"fake_quantize_{s}" for s in FLOAT],
    "int8": [f"{k}_{s}" for k in ("im2col_quantize", "im2col_quantize_nhwc") for s in (*FLOAT, "i8")]
    + [f"quantize_codes_{s}" for s in FLOAT]
    + [f"{k}_{s}" for k in ("imma_rows_epilogue", "imma_gemm_128x128", "imma_gemm_64x64")
       for s in (*FLOAT, "i8", "f16_i8", "i8_f16")],
    "conv": [f"conv2d_{t}_{s}" for t in ("direct", "direct_nhwc", "igemm") for s in FLOAT],
    "gemm": ["gemm_tiled_f32", "gemm_tiled_f16", "gemm_wmma_f16"],
}


def test_every_module_is_listed():
    assert sorted(EXPECTED) == sorted(compiler.KERNEL_SOURCES)


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("module", sorted(EXPECTED))
def test_module_compiles_with_its_kernels(cubins, module, arch):
    cubin = cubins[(module, arch)]
    assert cubin[:4] == b"\x7fELF"
    missing = [name for name in EXPECTED[module] if name.encode() + b"\0" not in cubin]
    assert not missing, f"{module}.cu for {arch} lacks {missing}"


def test_cubins_differ_per_arch(cubins):
    assert cubins[("gemm", "sm_87")] != cubins[("gemm", "sm_90")]


def test_cache_key_tracks_source_headers_options_arch_and_version(tmp_path, monkeypatch):
    folder = tmp_path / "src"
    shutil.copytree(compiler._SOURCE_DIR, folder)
    monkeypatch.setattr(compiler, "_SOURCE_DIR", folder)
    options = compiler.compile_options("sm_90")
    key = compiler.cache_key("pool", "sm_90", options, "13.0")
    assert compiler.cache_key("pool", "sm_90", options, "13.0") == key
    assert compiler.cache_key("pool", "sm_87", compiler.compile_options("sm_87"), "13.0") != key
    assert compiler.cache_key("pool", "sm_90", options + ["-lineinfo"], "13.0") != key
    assert compiler.cache_key("pool", "sm_90", options, "13.1") != key
    moved = [o for o in options if not o.startswith("--include-path")] + ["--include-path=/elsewhere"]
    assert compiler.cache_key("pool", "sm_90", moved, "13.0") == key  # same headers at another path
    header = folder / "common.cuh"
    header.write_text(header.read_text() + "\n// changed\n")
    assert compiler.cache_key("pool", "sm_90", options, "13.0") != key


def test_disk_cache_is_reused_and_keyed(cubins, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(compiler, "_MEMORY", {})
    first = compiler.compile_module("pool", "sm_90")
    files = list((tmp_path / "cuda").glob("pool-sm_90-*.cubin"))
    assert len(files) == 1 and files[0].read_bytes() == first
    monkeypatch.setattr(compiler, "_MEMORY", {})

    def no_compile(*args):
        raise AssertionError("compiled although the disk cache holds the cubin")

    monkeypatch.setattr(compiler, "_compile", no_compile)
    assert compiler.compile_module("pool", "sm_90") == first


def test_compile_error_is_one_line_naming_the_file(cubins, tmp_path, monkeypatch):
    folder = tmp_path / "src"
    shutil.copytree(compiler._SOURCE_DIR, folder)
    (folder / "broken.cu").write_text('#include "common.cuh"\nextern "C" __global__ void k(float* x) { x[0] = undefined_name; }\n')
    monkeypatch.setattr(compiler, "_SOURCE_DIR", folder)
    monkeypatch.setenv("EDGE_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(compiler.CompileError) as caught:
        compiler.compile_module("broken", "sm_90")
    message = str(caught.value)
    assert "broken.cu" in message and "sm_90" in message and "undefined_name" in message and "\n" not in message


def test_embed_cubins_are_keyed_by_module_and_arch(cubins):
    embedded = compiler.embed_cubins("sm_87", ("pool", "quant"))
    assert embedded == {"pool.sm_87": cubins[("pool", "sm_87")], "quant.sm_87": cubins[("quant", "sm_87")]}


def test_include_dirs_hold_the_fp16_header():
    assert compiler.include_dirs(), "no folder with cuda_fp16.h (install nvidia-cuda-runtime)"
    assert all((path / "cuda_fp16.h").is_file() for path in compiler.include_dirs())
