//! The list of scenarios, how one is run, and how a failure reads.

use std::fmt;
use std::io::Write;
use std::time::Duration;

use crate::TransportFactory;

/// How long one scenario may take in all before it is reported as hung.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(120);

/// Calls `$callback!` with the table of scenarios: test function name,
/// [`Scenario`] variant and a one-line description. The one list from
/// which both the enum and the tests of [`suite!`](crate::suite) are made.
#[doc(hidden)]
#[macro_export]
macro_rules! __for_each_scenario {
    ($callback:ident { $($extra:tt)* }) => {
        $crate::$callback! {
            { $($extra)* }
            routing_all => RoutingAll:
                "`Target::All` from every instance reaches every connection once",
            routing_all_except => RoutingAllExcept:
                "`Target::AllExcept` skips exactly the listed connections on every instance",
            routing_connection => RoutingConnection:
                "`Target::Connection` reaches that connection wherever it is held",
            routing_connections => RoutingConnections:
                "`Target::Connections` reaches each listed connection once",
            routing_group => RoutingGroup:
                "`Target::Group` reaches the group's members on every instance",
            routing_group_except => RoutingGroupExcept:
                "`Target::GroupExcept` skips exactly the listed members",
            routing_groups => RoutingGroups:
                "`Target::Groups` reaches a member of several groups once",
            routing_user => RoutingUser:
                "`Target::User` reaches the user's connections on every instance",
            routing_users => RoutingUsers:
                "`Target::Users` reaches each connection of the users once",
            send_to_all_reaches_every_instance => SendToAllReachesEveryInstance:
                "a send to all reaches every instance; disconnected connections get nothing",
            send_to_remote_connection_group_and_user => SendToRemoteConnectionGroupAndUser:
                "a connection, group or user held only by other instances is reached",
            disconnect_leaves_groups => DisconnectLeavesGroups:
                "a disconnected connection leaves its groups and user",
            removing_non_member_is_noop => RemovingNonMemberIsNoop:
                "removing a non-member from a group changes nothing, locally or remotely",
            remote_group_membership => RemoteGroupMembership:
                "group membership changed from other instances: add, add twice, remove",
            local_send_skips_bus => LocalSendSkipsBus:
                "a send to locally held connections publishes nothing",
            full_queue_does_not_block_group => FullQueueDoesNotBlockGroup:
                "a connection with a full queue misses messages; its group gets them",
            per_publisher_order => PerPublisherOrder:
                "1,000 sends from each of two instances arrive in publish order",
            hub_isolation => HubIsolation:
                "nothing published on one hub reaches another, even with similar names",
            no_echo_twice => NoEchoTwice:
                "the sender's own connections receive a send once; the bus echo is skipped",
            payload_limits_and_non_ascii => PayloadLimitsAndNonAscii:
                "payloads at the transport's size limits and non-ASCII text arrive intact",
            concurrent_publishers => ConcurrentPublishers:
                "many concurrent publishers on several instances: every message once",
        }
    };
}

/// Defines [`Scenario`] from the table of [`__for_each_scenario!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __define_scenarios {
    ({} $($function:ident => $variant:ident: $description:literal,)*) => {
        /// One scenario of the suite.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Scenario {
            $(
                #[doc = $description]
                $variant,
            )*
        }

        impl Scenario {
            /// Every scenario, in the order the suite lists them.
            pub const ALL: &'static [Scenario] = &[$(Scenario::$variant,)*];

            /// The scenario's name, which is also the name of its test.
            pub fn name(self) -> &'static str {
                match self {
                    $(Scenario::$variant => stringify!($function),)*
                }
            }

            /// What the scenario proves, in one line.
            pub fn description(self) -> &'static str {
                match self {
                    $(Scenario::$variant => $description,)*
                }
            }

            async fn run_unchecked(
                self,
                factory: &dyn $crate::TransportFactory,
            ) -> Result<(), $crate::fixture::Failure> {
                match self {
                    $(Scenario::$variant => $crate::scenarios::$function(factory).await,)*
                }
            }
        }
    };
}

__for_each_scenario!(__define_scenarios {});

/// How a scenario ended when it did not fail.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Every assertion held.
    Passed,
    /// The transport declared it cannot run the scenario.
    Skipped {
        /// The reason the transport gave.
        reason: String,
    },
}

impl Scenario {
    /// Runs the scenario over transports from `factory`.
    ///
    /// # Errors
    ///
    /// A [`ScenarioFailure`] saying which assertion failed, or that the
    /// scenario did not finish in two minutes.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future drops every hub it built.
    pub async fn run(self, factory: &dyn TransportFactory) -> Result<Outcome, ScenarioFailure> {
        if let Some(reason) = factory.capabilities().skip_reason(self) {
            let reason = reason.to_owned();
            return Ok(Outcome::Skipped { reason });
        }
        let run = tokio::time::timeout(SCENARIO_TIMEOUT, self.run_unchecked(factory));
        let message = match run.await {
            Ok(Ok(())) => return Ok(Outcome::Passed),
            Ok(Err(failure)) => failure.0,
            Err(_) => format!("did not finish within {SCENARIO_TIMEOUT:?}"),
        };
        Err(ScenarioFailure {
            scenario: self,
            message,
        })
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a scenario failed: which assertion, with who received what.
#[derive(Clone, Debug)]
pub struct ScenarioFailure {
    scenario: Scenario,
    message: String,
}

impl ScenarioFailure {
    /// The scenario that failed.
    pub fn scenario(&self) -> Scenario {
        self.scenario
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ScenarioFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "scenario {} failed: {}", self.scenario, self.message)
    }
}

impl std::error::Error for ScenarioFailure {}

/// Runs every scenario over `factory`, a few at a time, and returns each
/// one's result in [`Scenario::ALL`] order.
///
/// The [`suite!`](crate::suite) macro is the usual entry point; this is
/// for callers that want the results as values, such as a test asserting
/// that a deliberately broken transport fails.
pub async fn run_all(
    factory: &dyn TransportFactory,
) -> Vec<(Scenario, Result<Outcome, ScenarioFailure>)> {
    use futures_util::stream::{self, StreamExt};

    stream::iter(Scenario::ALL)
        .map(|&scenario| async move { (scenario, scenario.run(factory).await) })
        .buffered(4)
        .collect()
        .await
}

/// Runs one scenario as a test: builds a runtime, makes the factory inside
/// it, reports a skip on standard error, and panics on failure. Called by
/// the tests [`suite!`](crate::suite) generates.
#[doc(hidden)]
pub fn __run_test<F, M>(scenario: Scenario, make_factory: M)
where
    F: TransportFactory,
    M: FnOnce() -> F,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("failed to build a tokio runtime for the conformance test");
    let outcome = runtime.block_on(async move {
        let factory = make_factory();
        scenario.run(&factory).await
    });
    match outcome {
        Ok(Outcome::Passed) => {}
        Ok(Outcome::Skipped { reason }) => {
            // Written to the process's standard error rather than through
            // `eprintln!`, which the test harness captures and hides for
            // tests that pass: a skip must be seen.
            let line = format!("conformance: skipped: {scenario}: {reason}\n");
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
        Err(failure) => panic!("{failure}"),
    }
}

/// Expands to one `#[test]` per [`Scenario`], each named after its
/// scenario and run over transports from `$factory`.
///
/// `$factory` is any expression of a type that implements
/// [`TransportFactory`]; it is evaluated once per test, inside that test's
/// tokio runtime. Put each invocation in its own module to run the suite
/// over several transports or configurations in one file.
///
/// A scenario the factory declares it cannot run (see
/// [`Capabilities::skip`](crate::Capabilities::skip)) passes and prints
/// `conformance: skipped: <scenario>: <reason>` on standard error, which
/// the test harness does not hide.
///
/// ```
/// mod memory {
///     use backplane_memory::MemoryBackplane;
///
///     conformance::suite!({
///         let bus = MemoryBackplane::new();
///         conformance::factory_fn(move || {
///             let bus = bus.clone();
///             async move { Ok(bus) }
///         })
///     });
/// }
/// ```
#[macro_export]
macro_rules! suite {
    ($factory:expr) => {
        $crate::__for_each_scenario!(__suite_tests { $factory });
    };
    ($factory:expr,) => {
        $crate::suite!($factory);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __suite_tests {
    ({ $factory:expr } $($function:ident => $variant:ident: $description:literal,)*) => {
        $(
            #[doc = $description]
            #[test]
            fn $function() {
                $crate::__run_test($crate::Scenario::$variant, || $factory);
            }
        )*
    };
}
