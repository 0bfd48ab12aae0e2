"""mrl_ref: Matryoshka Representation Learning with a hand-written NumPy autograd."""

__all__ = []
