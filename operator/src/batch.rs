//! Where one batch is: the state [`crate::status`] derives from Jobs and pods and
//! [`crate::actions`] and [`crate::ahead`] act on. A leaf, so those modules share it without
//! importing one another.

/// Where one batch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchState {
    /// No Job yet.
    Pending,
    /// Job exists and has not finished (it may be suspended).
    Active,
    Succeeded,
    Failed,
}
