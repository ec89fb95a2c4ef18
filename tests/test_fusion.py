import pytest
import torch
import torch.nn.functional as F

from rgbir.models.fusion import C2TSSA, CFSAM, MSC, TSSA, Add, ConvAttn, MiLKConvAttn
from rgbir.models.fusion.convattn import dynamic_depthwise3x3, geo_ensemble


def upstream_msc_forward(m: MSC, x, y):
    """The YOLOMM port's forward (two topk+scatter+softmax branches, sqrt reshape), for square maps."""
    b, c, h, w = x.shape
    y = sum(p(y) for p in m.pools).flatten(-2, -1).transpose(1, 2)
    y = m.layer_norm(y)
    n1 = y.shape[1]
    kv = m.kv(y).reshape(b, n1, 2, m.num_heads, c // m.num_heads).permute(2, 0, 3, 1, 4)
    k, v = kv[0], kv[1]
    q = m.q(x.flatten(2).transpose(1, 2))
    n = q.shape[1]
    q = q.reshape(b, n, m.num_heads, c // m.num_heads).permute(0, 2, 1, 3)
    attn = (q @ k.transpose(-2, -1)) * (c // m.num_heads) ** -0.5
    outs = []
    for div in (m.k1, m.k2):
        mask = torch.zeros_like(attn, dtype=torch.bool)
        mask.scatter_(-1, torch.topk(attn, k=max(n1 // div, 1), dim=-1)[1], True)
        outs.append(torch.where(mask, attn, torch.full_like(attn, float("-inf"))).softmax(-1) @ v)
    out = outs[0] * m.attn1 + outs[1] * m.attn2
    x = m.proj(out.transpose(1, 2).reshape(b, n, c))
    hw = int(n**0.5)
    return x.transpose(1, 2).reshape(b, c, hw, hw)


@pytest.mark.parametrize("qkv_bias", [True, False])
def test_msc_matches_upstream_on_square_maps(qkv_bias):
    m = MSC(32, num_heads=4, qkv_bias=qkv_bias).eval()
    with torch.no_grad():
        m.attn1.fill_(0.3), m.attn2.fill_(0.8)
    x, y = torch.randn(2, 32, 6, 6), torch.randn(2, 32, 6, 6)
    torch.testing.assert_close(m([x, y]), upstream_msc_forward(m, x, y), atol=1e-5, rtol=1e-5)


def test_msc_variants_state_dict_keys():
    port, original = MSC(16, 4).state_dict(), MSC(16, 4, qkv_bias=False).state_dict()
    assert set(port) == {"q.weight", "q.bias", "kv.weight", "kv.bias", "proj.weight", "proj.bias", "attn1",
                         "attn2", "layer_norm.weight", "layer_norm.bias"}
    assert set(port) - set(original) == {"q.bias", "kv.bias"}


def test_msc_non_square_keeps_the_real_layout():
    m = MSC(16, num_heads=2).eval()
    x, y = torch.randn(1, 16, 4, 10), torch.randn(1, 16, 4, 10)
    out = m([x, y])
    assert out.shape == x.shape
    # the same map transposed spatially must give the transposed result (no sqrt reshape mixing rows)
    out_t = m([x.transpose(2, 3), y.transpose(2, 3)])
    torch.testing.assert_close(out_t, out.transpose(2, 3), atol=1e-5, rtol=1e-5)


def test_msc_rejects_bad_heads():
    with pytest.raises(ValueError, match="divisible"):
        MSC(30, num_heads=8)


def tost_tssa(m: TSSA, x):
    """ToST's AttentionTSSA.forward, transcribed with einsum-free ops."""
    b, n, c = x.shape
    w = m.qkv(x).view(b, n, m.heads, c // m.heads).permute(0, 2, 1, 3)
    w_sq = F.normalize(w, dim=-2) ** 2
    pi = torch.nn.Softmax(dim=1)(torch.sum(w_sq, dim=-1) * m.temp)
    dots = torch.matmul((pi / (pi.sum(dim=-1, keepdim=True) + 1e-8)).unsqueeze(-2), w**2)
    out = -torch.mul(w.mul(pi.unsqueeze(-1)), 1.0 / (1 + dots))
    return m.to_out(out.permute(0, 2, 1, 3).reshape(b, n, c))


def test_tssa_matches_tost():
    m = TSSA(32, num_heads=4).eval()
    with torch.no_grad():
        m.temp.uniform_(0.5, 2.0)
    x = torch.randn(2, 50, 32)
    torch.testing.assert_close(m(x), tost_tssa(m, x), atol=1e-6, rtol=1e-5)


def test_c2tssa_keys_and_shape():
    m = C2TSSA(256, 256, n=1)
    keys = set(m.state_dict())
    assert {"m.0.attn.qkv.weight", "m.0.attn.temp", "m.0.attn.to_out.0.weight", "m.0.attn.to_out.0.bias"} <= keys
    assert not any(k.startswith("m.0.attn.pe") or "attn.proj" in k for k in keys)  # PSA attention replaced
    assert m.m[0].attn.temp.shape == (2, 1)
    assert m(torch.randn(1, 256, 5, 7)).shape == (1, 256, 5, 7)


def test_dynamic_depthwise_matches_grouped_conv():
    x, kernel = torch.randn(3, 5, 7, 9), torch.randn(3, 5, 3, 3)
    grouped = F.conv2d(x.reshape(1, 15, 7, 9), kernel.reshape(15, 1, 3, 3), padding=1, groups=15).view(3, 5, 7, 9)
    torch.testing.assert_close(dynamic_depthwise3x3(x, kernel), grouped, atol=1e-5, rtol=1e-5)


def test_geo_ensemble_is_symmetric():
    k = geo_ensemble(torch.randn(2, 2, 5, 5))
    torch.testing.assert_close(k, k.flip(-1))
    torch.testing.assert_close(k, torch.rot90(k, 1, (-2, -1)))


def test_convattn_matches_esc_formulation():
    m = ConvAttn(32, kernel_size=7).eval()
    with torch.no_grad():
        m.plk.dwc_proj[-1].weight.normal_()  # upstream zero-inits this; make the dynamic branch non-trivial
    x = torch.randn(2, 32, 9, 11)
    p = m.pdim
    x1, x2 = x[:, :p], x[:, p:]
    dyn = m.plk.dwc_proj(x1).reshape(-1, 1, 3, 3)
    x1_dyn = F.conv2d(x1.reshape(1, 2 * p, 9, 11), dyn, padding=1, groups=2 * p).reshape(2, p, 9, 11)
    lk = geo_ensemble(m.plk_filter)
    expected = m.aggr(torch.cat((F.conv2d(x1, lk, padding=3) + x1_dyn, x2), 1))
    torch.testing.assert_close(m(x), expected, atol=1e-4, rtol=1e-4)
    assert {"plk_filter", "plk.dwc_proj.1.weight", "plk.dwc_proj.3.bias", "aggr.weight"} <= set(m.state_dict())


def test_milk_equals_per_sample_mixed_kernel():
    m = MiLKConvAttn(16, num_kernels=3, kernel_size=5).eval()
    x = torch.randn(2, 16, 6, 8)
    p = m.pdim
    x1 = x[:, :p]
    ctx = m.context(x1)
    routing = m.route(ctx).reshape(2, p, 3).softmax(-1)  # (B, C, M)
    bases = m.bases.view(p, 3, 5, 5)
    gate = m.gate(ctx).sigmoid()
    dyn = dynamic_depthwise3x3(x1, m.dynamic(x1))
    for i in range(2):  # build each sample's depth-wise kernel explicitly and convolve
        kernel = (routing[i, :, :, None, None] * bases).sum(1).unsqueeze(1)  # (C, 1, 5, 5)
        mixed = F.conv2d(x1[i : i + 1], kernel, padding=2, groups=p)
        x1_i = gate[i : i + 1] * mixed + (1 - gate[i : i + 1]) * dyn[i : i + 1]
        expected = m.aggr(torch.cat((x1_i, x[i : i + 1, p:]), 1))
        torch.testing.assert_close(m(x)[i : i + 1], expected, atol=1e-5, rtol=1e-4)


def test_cfsam_levels_shapes_and_gradients():
    m = CFSAM([16, 32, 64], width=32, num_heads=4, num_layers=2, token_strides=[4, 2, 1])
    xs = [torch.randn(2, 16, 16, 20, requires_grad=True), torch.randn(2, 32, 8, 10), torch.randn(2, 64, 4, 5)]
    outs = m(xs)
    assert [o.shape for o in outs] == [x.shape for x in xs]
    sum(o.sum() for o in outs).backward()
    assert xs[0].grad.abs().sum() > 0
    # information crosses levels: perturbing P5 changes the P3 output
    with torch.no_grad():
        base = m(xs)[0]
        moved = m([xs[0], xs[1], xs[2] + 1.0])[0]
    assert not torch.allclose(base, moved)


def test_cfsam_rejects_mismatched_strides():
    with pytest.raises(ValueError, match="token_strides"):
        CFSAM([8, 8], width=8, num_heads=2, token_strides=[1])


def test_add_fusion():
    a, b = torch.randn(1, 4, 3, 3), torch.randn(1, 4, 3, 3)
    torch.testing.assert_close(Add()([a, b]), a + b)
