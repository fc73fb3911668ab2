//! What each heartbeat does: tells systemd's watchdog, renews the
//! heartbeat, publishes this instance's report, and reaps dead instances.

use super::Ctx;
use crate::fleet::InstanceReport;
use crate::internal_events::RecordsReaped;

/// One heartbeat.
pub(super) async fn beat(ctx: &Ctx, token: &str) {
    crate::notify::watchdog();
    match ctx.source.heartbeat(token, ctx.config.heartbeat_ttl).await {
        Ok(()) => ctx.deps.redis.ok(),
        Err(e) => ctx.deps.redis.failed(&e),
    }
    ctx.publish_report().await;
    match ctx.source.reap_dead().await {
        Ok(n) => RecordsReaped(n).emit(&ctx.metrics),
        Err(e) => ctx.deps.redis.failed(&e),
    }
}

impl Ctx {
    /// What this instance says of itself in Redis, with each heartbeat.
    fn report(&self) -> InstanceReport {
        InstanceReport {
            instance: self.status.instance.clone(),
            last_heartbeat: chrono::Utc::now(),
            state: "running".to_owned(),
            totals: self.metrics.snapshot().totals(),
            newest_stored: self.status.newest_stored(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    /// Publishes the report; a failure only marks Redis as failing.
    pub(super) async fn publish_report(&self) {
        if let Err(e) = self
            .source
            .publish_report(&self.report(), self.config.heartbeat_ttl)
            .await
        {
            self.deps.redis.failed(&e);
        }
    }
}
