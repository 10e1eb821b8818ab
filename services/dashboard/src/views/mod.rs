//! View models: what the templates show, computed from the shared model so that templates
//! only lay it out (and so that it can be tested without HTML).

pub mod card;
pub mod detail;
pub mod format;
pub mod timeline;

pub use card::Card;
pub use detail::Detail;
