//! The conformance suite over Redis: one test per scenario against the
//! single server in `BACKPLANE_REDIS_URL`, and again against the cluster
//! in `BACKPLANE_REDIS_CLUSTER_URL` (comma-separated node URLs) over
//! sharded pub/sub.

use std::sync::Arc;

use async_trait::async_trait;
use backplane_api::{Result, ServerId, Transport};
use backplane_redis::RedisBackplane;
use conformance::{Capabilities, TransportFactory};

/// A limit of our own, so the suite checks the refusal of one byte more.
const MAX_MESSAGE_SIZE: usize = 256 * 1024;

/// Which Redis the factory connects to.
#[derive(Clone, Copy)]
enum Deployment {
    Standalone,
    Cluster,
}

/// One `RedisBackplane` per simulated instance, all under a channel
/// prefix of their own.
struct Redis {
    deployment: Deployment,
    prefix: String,
}

impl Redis {
    fn new(deployment: Deployment) -> Self {
        let random = ServerId::random();
        Self {
            deployment,
            prefix: format!("cf{}", &random.as_str()[..10]),
        }
    }
}

#[async_trait]
impl TransportFactory for Redis {
    async fn instance(&self) -> Result<Arc<dyn Transport>> {
        let builder = match self.deployment {
            Deployment::Standalone => {
                RedisBackplane::builder(&conformance::servers::redis_url().await)
            }
            Deployment::Cluster => {
                let nodes = conformance::servers::redis_cluster_url()
                    .expect("capabilities skip every scenario without a cluster");
                RedisBackplane::cluster(nodes.split(','))
            }
        };
        let backplane = builder
            .channel_prefix(&self.prefix)
            .max_message_size(MAX_MESSAGE_SIZE)
            .build()
            .await?;
        Ok(Arc::new(backplane))
    }

    fn capabilities(&self) -> Capabilities {
        let capabilities = Capabilities::new().max_message_size(MAX_MESSAGE_SIZE);
        match self.deployment {
            Deployment::Cluster if conformance::servers::redis_cluster_url().is_none() => {
                capabilities.skip_all("BACKPLANE_REDIS_CLUSTER_URL is not set")
            }
            _ => capabilities,
        }
    }
}

mod standalone {
    conformance::suite!(super::Redis::new(super::Deployment::Standalone));
}

mod cluster {
    conformance::suite!(super::Redis::new(super::Deployment::Cluster));
}
