//! Tools and demos built on sud-engine (see src/bin).
