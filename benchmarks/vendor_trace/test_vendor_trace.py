"""What the context tracer sees of a vendor library's loads and launches (docs/trace.md).

One convolution built and run under each selected scenario with the tracer on and no declared
outcome, so that a failing run prints its ``trtctx contexts`` and ``trtctx trace`` sections in
full. On a GPU host with cupti-python::

    python -m pytest benchmarks/vendor_trace --trtctx-order=driver-first,pushed-over-torch \\
        --trtctx-backend=triton --trtctx-trace -p no:cacheprovider -rf --tb=long
"""

from pytest_trtctx.engines.spec import ConvSpec

SPEC = ConvSpec("k3_f32", 1, 4, 8, 9, 11, (3, 3), (1, 1), (1, 1), (1, 1), 1, "float32")


def test_one_conv_traced(trtctx):  # type: ignore[no-untyped-def]
    trtctx.check_conv(SPEC)
