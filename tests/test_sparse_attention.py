import pytest
import torch

from rgbir.models.sparse_attention import topk_counts, topk_sparse_attention, topk_sparse_attention_reference


@pytest.mark.parametrize("b,h,n,n1,d,dv", [(2, 8, 64, 64, 16, 16), (1, 4, 30, 17, 8, 12), (1, 2, 5, 1, 4, 4),
                                          (1, 1, 7, 2, 3, 5), (3, 2, 40, 100, 32, 8)])
def test_matches_upstream_topk_scatter_formulation(b, h, n, n1, d, dv):
    q, k, v = torch.randn(b, h, n, d), torch.randn(b, h, n1, d), torch.randn(b, h, n1, dv)
    w = (torch.tensor(0.3), torch.tensor(0.9))
    ours = topk_sparse_attention(q, k, v, d**-0.5, (2, 3), w)
    ref = topk_sparse_attention_reference(q, k, v, d**-0.5, (2, 3), w)
    assert ours.shape == (b, h, n, dv)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_three_branches_and_float_weights():
    q, k, v = torch.randn(1, 2, 9, 4), torch.randn(1, 2, 31, 4), torch.randn(1, 2, 31, 6)
    ours = topk_sparse_attention(q, k, v, 0.7, (1, 4, 9), (0.2, 0.5, 0.3))
    ref = topk_sparse_attention_reference(q, k, v, 0.7, (1, 4, 9), (0.2, 0.5, 0.3))
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_divisor_one_is_dense_softmax_attention():
    q, k, v = torch.randn(1, 1, 6, 4), torch.randn(1, 1, 10, 4), torch.randn(1, 1, 10, 4)
    dense = ((q @ k.transpose(-2, -1)) * 0.5).softmax(-1) @ v
    torch.testing.assert_close(topk_sparse_attention(q, k, v, 0.5, (1,), (1.0,)), dense)


def test_ties_are_kept_inclusively():
    # one query, keys giving scores [3, 2, 2, 1]: k = 4 // 2 = 2, threshold 2 -> three entries kept
    q = torch.ones(1, 1, 1, 1)
    k = torch.tensor([3.0, 2.0, 2.0, 1.0]).view(1, 1, 4, 1)
    v = torch.eye(4).view(1, 1, 4, 4)
    out = topk_sparse_attention(q, k, v, 1.0, (2,), (1.0,))
    e = torch.exp(torch.tensor([0.0, -1.0, -1.0]))
    expected = torch.cat((e / e.sum(), torch.zeros(1)))
    torch.testing.assert_close(out.view(4), expected)


def test_gradients_reach_branch_weights():
    q, k, v = (torch.randn(1, 2, 8, 4, requires_grad=True) for _ in range(3))
    a, b = torch.tensor([0.5], requires_grad=True), torch.tensor([0.5], requires_grad=True)
    topk_sparse_attention(q, k, v, 0.5, (2, 3), (a, b)).sum().backward()
    assert a.grad is not None and b.grad is not None and q.grad.abs().sum() > 0


def test_counts_and_validation():
    assert topk_counts(10, (2, 3)) == [5, 3]
    assert topk_counts(1, (2, 3)) == [1, 1]
    for bad in ((), (0,), (2, -1)):
        with pytest.raises(ValueError):
            topk_counts(10, bad)
    q = torch.randn(1, 1, 2, 2)
    with pytest.raises(ValueError, match="weights"):
        topk_sparse_attention(q, q, q, 1.0, (2, 3), (1.0,))
