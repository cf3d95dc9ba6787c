//! The in-memory transport: two hubs on one in-process bus.

use std::sync::Arc;

use backplane_memory::MemoryBackplane;

use super::Instances;
use crate::load::{Result, Sink};

/// Instance A and instance B on one fresh memory bus.
pub(crate) async fn backplane(sink: Arc<Sink>) -> Result<Instances<MemoryBackplane>> {
    let bus = MemoryBackplane::new();
    Instances::start(bus.clone(), bus, sink).await
}
