//! The datakit-ci engine: evaluates every test of every target incrementally and records statuses
