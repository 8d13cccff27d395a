"""lbtrain: large-batch, data-parallel training in JAX."""
