//! Table-driven tests of the lifecycle function (more scenario tests live in `tests/`).
