"""Model sources: one module per way of naming a model, each with `check(target)` (at start-up, fails with the
closest valid names) and `build(spec, weights, input_size) -> BuiltModel` (seeded weights when none are at hand)."""
