//! How the suite gets transports, and what a transport declares about
//! itself.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backplane_api::{Result, Transport};

use crate::Scenario;

/// How long the suite waits, by default, for a message or a membership
/// change before it declares it lost.
pub const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes transports for the suite: one fresh transport per simulated
/// instance.
///
/// Every call to [`TransportFactory::instance`] must return a transport
/// with its own connection to the bus, as a separate process would have,
/// all of them on the same bus. Scenarios use unique hub names, so the
/// factory may hand out transports on a bus that other tests use at the
/// same time.
///
/// A closure does as well: see [`factory_fn`].
#[async_trait]
pub trait TransportFactory: Send + Sync + 'static {
    /// Returns a new transport for one more instance.
    ///
    /// # Errors
    ///
    /// The transport's error if it could not connect; the scenario that
    /// asked for it then fails with that error.
    async fn instance(&self) -> Result<Arc<dyn Transport>>;

    /// What the transport can carry and which scenarios it cannot run.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
}

/// What a transport declares about itself: size limits the suite probes,
/// and the scenarios it cannot run, each with a reason.
///
/// # Example
///
/// ```
/// use conformance::{Capabilities, Scenario};
///
/// let capabilities = Capabilities::new()
///     // The largest encoded envelope the transport carries; one byte more
///     // must be refused with `PayloadTooLarge`.
///     .max_message_size(1 << 20)
///     // The transport splits envelopes larger than this into chunks.
///     .size_boundary(7999)
///     .skip(Scenario::FullQueueDoesNotBlockGroup, "no way to slow a reader");
/// assert!(capabilities.skip_reason(Scenario::RoutingAll).is_none());
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Capabilities {
    pub(crate) max_message_size: Option<usize>,
    pub(crate) size_boundaries: Vec<usize>,
    pub(crate) delivery_timeout: Duration,
    skips: Vec<(Scenario, String)>,
    skip_all: Option<String>,
}

impl Default for Capabilities {
    fn default() -> Self {
        Self {
            max_message_size: None,
            size_boundaries: Vec::new(),
            delivery_timeout: DEFAULT_DELIVERY_TIMEOUT,
            skips: Vec::new(),
            skip_all: None,
        }
    }
}

impl Capabilities {
    /// A transport with no size limit that runs every scenario.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares the largest envelope the transport carries, in bytes of
    /// its [`codec::encode`](backplane_api::codec::encode) form. The suite
    /// sends envelopes of exactly this size, which must arrive intact, and
    /// one byte larger, which must be refused with
    /// [`BackplaneError::PayloadTooLarge`](backplane_api::BackplaneError::PayloadTooLarge).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = Some(bytes);
        self
    }

    /// Declares an encoded size, in bytes, at which the transport changes
    /// how it carries an envelope (a frame or chunk size). The suite sends
    /// envelopes one byte below, at, one byte above and twice this size,
    /// with multi-byte characters straddling every split.
    pub fn size_boundary(mut self, bytes: usize) -> Self {
        self.size_boundaries.push(bytes);
        self
    }

    /// How long to wait for a message or a membership change before
    /// declaring it lost (default [`DEFAULT_DELIVERY_TIMEOUT`]). Failures
    /// take at least this long to report; passing runs do not wait for it.
    pub fn delivery_timeout(mut self, timeout: Duration) -> Self {
        self.delivery_timeout = timeout;
        self
    }

    /// Declares that the transport cannot run `scenario`. The generated
    /// test reports the skip with its name and `reason` instead of running
    /// it.
    pub fn skip(mut self, scenario: Scenario, reason: impl Into<String>) -> Self {
        self.skips.push((scenario, reason.into()));
        self
    }

    /// Declares that no scenario can run, such as when the bus is not
    /// configured on this machine; every test reports the skip by name.
    pub fn skip_all(mut self, reason: impl Into<String>) -> Self {
        self.skip_all = Some(reason.into());
        self
    }

    /// Why `scenario` is skipped, if it is.
    pub fn skip_reason(&self, scenario: Scenario) -> Option<&str> {
        if let Some(reason) = &self.skip_all {
            return Some(reason);
        }
        self.skips
            .iter()
            .find(|(skipped, _)| *skipped == scenario)
            .map(|(_, reason)| reason.as_str())
    }
}

/// A [`TransportFactory`] made of a closure; see [`factory_fn`].
pub struct FnFactory<F> {
    make: F,
    capabilities: Capabilities,
}

impl<F> FnFactory<F> {
    /// Declares the transport's capabilities (default: none).
    pub fn capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }
}

impl<F> std::fmt::Debug for FnFactory<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnFactory")
            .field("capabilities", &self.capabilities)
            .finish_non_exhaustive()
    }
}

/// Makes a [`TransportFactory`] from a closure that connects one
/// transport.
///
/// ```
/// use backplane_memory::MemoryBackplane;
///
/// let bus = MemoryBackplane::new();
/// let factory = conformance::factory_fn(move || {
///     let bus = bus.clone();
///     async move { Ok(bus) }
/// });
/// ```
pub fn factory_fn<F, Fut, T>(make: F) -> FnFactory<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T>> + Send,
    T: Transport + 'static,
{
    FnFactory {
        make,
        capabilities: Capabilities::default(),
    }
}

#[async_trait]
impl<F, Fut, T> TransportFactory for FnFactory<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T>> + Send,
    T: Transport + 'static,
{
    async fn instance(&self) -> Result<Arc<dyn Transport>> {
        let transport = (self.make)().await?;
        Ok(Arc::new(transport))
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities.clone()
    }
}
