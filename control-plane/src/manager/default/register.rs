//! `register_service(service, config)` and `unregister_service(service_id)`
//! (workspace-api.md §5.1): applied to the [`crate::registry::Registry`], which emits the
//! service events.

use super::{args, opt_string, Ctx, Manager};
use crate::error::{ManagerError, ManagerResult};
use rmpv::Value;

/// `register_service`: the service record a client registers (`config` is ignored).
#[derive(Debug)]
pub(crate) struct RegisterService {
    service: Value,
}

// === impl RegisterService ===

impl RegisterService {
    /// Errors: [`ManagerError::InvalidArgument`] when `service` is not a map.
    pub(crate) fn parse(a: Vec<Value>) -> ManagerResult<Self> {
        let [service, _config] = args(a);
        if !service.is_map() {
            return Err(ManagerError::InvalidArgument(
                "service must be a map".into(),
            ));
        }
        Ok(RegisterService { service })
    }

    pub(crate) fn apply(self, m: &Manager, ctx: &Ctx) -> ManagerResult<Value> {
        m.registry.register(ctx, self.service)?;
        Ok(Value::Nil)
    }
}

/// `unregister_service`: the id of one of the caller's services (`None`: not a string).
#[derive(Debug)]
pub(crate) struct UnregisterService {
    service_id: Option<String>,
}

// === impl UnregisterService ===

impl UnregisterService {
    pub(crate) fn parse(a: Vec<Value>) -> Self {
        let [service_id] = args(a);
        UnregisterService {
            service_id: opt_string(&service_id),
        }
    }

    pub(crate) fn apply(self, m: &Manager, ctx: &Ctx) -> ManagerResult<Value> {
        m.registry.unregister(ctx, self.service_id.as_deref())?;
        Ok(Value::Nil)
    }
}
