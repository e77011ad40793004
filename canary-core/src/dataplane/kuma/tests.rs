//! Tests of the Kuma model.
