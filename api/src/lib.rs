//! What renderfarm's operator shares with the `kubectl render` plugin: the RenderJob custom
//! resource ([`crd`]), the label and annotation keys and Job names of what the operator creates
//! ([`names`]), how frames are cut into batches ([`plan`]), batch sets as ranges ([`ranges`]),
//! and a create that waits out admission webhooks ([`create`]). The plugin depends on this and
//! not on the operator.

pub mod crd;
pub mod create;
pub mod frames;
pub mod names;
pub mod nodes;
pub mod plan;
pub mod ranges;
