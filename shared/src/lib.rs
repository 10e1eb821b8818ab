//! What every status-tracker service shares, and nothing else: the CloudEvents envelope and
//! the normalized event types, NATS subjects and streams, newtype ids, the tracker's request
//! model, settings, telemetry, and the embedded `nats-server` used by the all-in-one mode and
//! by tests. Services depend on this crate and never on each other.

pub mod bus;
pub mod envelope;
pub mod events;
pub mod health;
pub mod ids;
pub mod metrics;
pub mod model;
pub mod nats_server;
pub mod paths;
pub mod schema;
pub mod settings;
pub mod subjects;
pub mod telemetry;

pub use bus::Bus;
pub use envelope::Envelope;
pub use settings::Env;
