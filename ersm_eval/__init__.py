"""Evaluators: deletion curves, occlusion, sparsity and mask statistics, as pandas tables."""
