//! MongoDB adapter (in progress).
