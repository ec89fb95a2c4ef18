"""The fused kernel as a PyTorch op: registration, its fake implementation under torch.compile / torch.export,
the fallback off CUDA, and the choice of implementation for a model (``--attention``). The kernel's numbers are
checked on a GPU (tests/test_plugins.py)."""

import pytest
import torch

from rgbir.errors import RgbirError
from rgbir.models import build_model
from rgbir.models.attention_kernel import attention_function, kernel_attention, set_attention, topk_sparse_attention_op
from rgbir.models.fusion import MSC
from rgbir.models.sparse_attention import topk_sparse_attention, topk_sparse_attention_reference


def qkv(n=24, n1=30, d=8, dv=6):
    g = torch.Generator().manual_seed(3)
    return (torch.randn(2, 4, n, d, generator=g), torch.randn(2, 4, n1, d, generator=g),
            torch.randn(2, 4, n1, dv, generator=g))


def test_the_op_is_registered_and_computes_the_semantics_off_cuda():
    q, k, v = qkv()
    out = torch.ops.rgbir.topk_sparse_attention(q, k, v, 0.35, [2, 3], [0.6, 0.4])
    torch.testing.assert_close(out, topk_sparse_attention(q, k, v, 0.35, (2, 3), (0.6, 0.4)))
    assert out.shape == (2, 4, 24, 6) and out.data_ptr() not in {t.data_ptr() for t in (q, k, v)}


def test_opcheck_schema_fake_and_dispatch():
    q, k, v = qkv()
    torch.library.opcheck(topk_sparse_attention_op, (q, k, v, 0.35, [2, 3], [0.6, 0.4]),
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"))


def test_msc_with_the_op_traces_under_export_and_compile():
    msc = MSC(32, 4).eval()
    set_attention(msc, "upstream")  # anything but the op first: then switch, as a backend does
    msc.prepare_export()
    msc.attention = kernel_attention
    x, y = torch.randn(1, 32, 4, 6), torch.randn(1, 32, 4, 6)
    with torch.no_grad():
        eager = msc([x, y])
        program = torch.export.export(msc, ([x, y],))
        assert any(n.target is torch.ops.rgbir.topk_sparse_attention.default for n in program.graph.nodes)
        torch.testing.assert_close(program.module()([x, y]), eager)
        compiled = torch.compile(msc, backend="aot_eager", fullgraph=True)
        torch.testing.assert_close(compiled([x, y]), eager)


def test_choosing_the_implementation():
    model = build_model("yolo11n-mm-mid-msc", nc=2).eval()
    assert set_attention(model, "upstream") == 2  # MSC at P4 and P5
    assert all(m.attention is topk_sparse_attention_reference for m in model.modules() if isinstance(m, MSC))
    assert attention_function("auto", "cpu") is topk_sparse_attention  # no CUDA: the reference
    assert attention_function("reference", "cpu") is topk_sparse_attention
    with pytest.raises(RgbirError, match="runs on CUDA only"):
        set_attention(model, "kernel", "cpu")
    with pytest.raises(RgbirError, match="is not one of auto, kernel, reference, upstream"):
        set_attention(model, "fast")


@pytest.mark.gpu
def test_the_op_on_cuda_matches_the_reference_in_a_model():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: the kernel runs only there")
    from lively import lively
    from rgbir.plugins import find_library

    try:
        find_library()
    except RgbirError as e:
        pytest.skip(str(e))

    model = lively(build_model("yolo11n-mm-mid-msc", nc=2)).eval().cuda()
    rgb, ir = torch.rand(1, 3, 256, 320, device="cuda"), torch.rand(1, 3, 256, 320, device="cuda")
    with torch.no_grad():
        set_attention(model, "reference", "cuda")
        reference = model(rgb, ir)
        assert set_attention(model, "kernel", "cuda") == 2
        kernel = model(rgb, ir)
    assert ((kernel - reference).abs().max() / reference.abs().max()).item() < 1e-3
