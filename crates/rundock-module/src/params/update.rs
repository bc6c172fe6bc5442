//! How a change replaces the container: `drain` and `drain_mode` (how the old one
//! stops), `update` and `update_timeout` (stop-first, or start-first beside it).

use super::choice::choice;
use super::coerce::Params;
use rundock_spec::error::{Result, SpecError};
use rundock_spec::{AnnounceAs, AnnounceSpec, DrainMode, StartFirst};

choice!(DrainMode [Fixed, Idle] as_str);

/// The `update` order; only start-first is stored (as [`StartFirst`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UpdateOrder {
    StopFirst,
    StartFirst,
}

choice!(UpdateOrder { StopFirst => "stop-first", StartFirst => "start-first" });

/// Seconds between withdrawing the record and stopping the container.
pub(super) fn drain(p: &mut Params) -> Result<u32> {
    p.seconds("drain", 0, 3600)
}

pub(super) fn drain_mode(p: &mut Params) -> Result<DrainMode> {
    p.choice_or_default("drain_mode")
}

/// `update` and `update_timeout`. Start-first runs two containers of the service at
/// once, so they cannot share a host port: it needs a port Docker picks
/// (`announce: auto`), whose record SRV clients follow.
pub(super) fn start_first(
    p: &mut Params,
    announce: Option<&AnnounceSpec>,
) -> Result<Option<StartFirst>> {
    let order = p.choice_or_default::<UpdateOrder>("update")?;
    let timeout = p.seconds("update_timeout", 1, 3600)?;
    if order == UpdateOrder::StopFirst {
        return Ok(None);
    }
    let announce = announce.expect("update is refused without announce");
    if announce.announce_as == AnnounceAs::Container {
        return Err(SpecError::new(
            "update",
            "start-first needs a published port Docker picks (announce: auto); announce_as=container publishes none and its record carries the container's address, which changes with every container",
        ));
    }
    if !announce.auto_port {
        return Err(SpecError::new(
            "update",
            format!(
                "start-first runs the new container beside the old one, and both cannot bind host port {}: use announce: auto (SRV clients follow the port)",
                announce.port
            ),
        ));
    }
    Ok(Some(StartFirst { timeout }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::announced;
    use rundock_spec::{DrainMode, StartFirst};
    use serde_json::{json, Value};

    #[test]
    fn drain_mode_idle_is_stored_and_needs_an_announced_port() {
        let spec = announced(json!({"announce": 80, "drain": 30, "drain_mode": "idle"}))
            .unwrap()
            .spec
            .unwrap();
        assert_eq!((spec.drain, spec.drain_mode), (30, DrainMode::Idle));
        let json: Value = serde_json::from_str(&spec.to_json()).unwrap();
        assert_eq!(json["drain_mode"], "idle");
        let fixed = announced(json!({"announce": 80})).unwrap().spec.unwrap();
        assert_eq!(fixed.drain_mode, DrainMode::Fixed);
        assert!(!fixed.to_json().contains("drain_mode"));
        let err = announced(json!({"drain_mode": "idle"})).unwrap_err();
        assert_eq!(err.field, "drain_mode");
        let err = announced(json!({"announce": 80, "drain_mode": "soon"})).unwrap_err();
        assert_eq!(err.field, "drain_mode");
    }

    #[test]
    fn start_first_needs_a_port_docker_picks() {
        let spec = announced(
            json!({"announce": "auto", "port": 80, "update": "start-first",
                                    "update_timeout": 30}),
        )
        .unwrap()
        .spec
        .unwrap();
        assert_eq!(spec.start_first, Some(StartFirst { timeout: 30 }));
        let json: Value = serde_json::from_str(&spec.to_json()).unwrap();
        assert_eq!(json["start_first"], json!({"timeout": 30}));
        let stop_first = announced(json!({"announce": "auto", "port": 80})).unwrap();
        assert_eq!(stop_first.spec.unwrap().start_first, None);

        let refused = |extra: Value| {
            let err = announced(extra).unwrap_err();
            (err.field.clone(), err.message)
        };
        let (field, msg) = refused(json!({"announce": 8080, "update": "start-first"}));
        assert_eq!(field, "update");
        assert!(msg.contains("both cannot bind host port 8080"), "{msg}");
        let (field, msg) = refused(json!({"announce": 8080, "announce_as": "container",
                                          "update": "start-first"}));
        assert_eq!(field, "update");
        assert!(
            msg.contains("announce_as=container publishes none"),
            "{msg}"
        );
        let (field, _) = refused(json!({"update": "start-first"}));
        assert_eq!(field, "update", "start-first without announce");
        let (field, _) = refused(json!({"announce": "auto", "port": 80, "update": "later"}));
        assert_eq!(field, "update");
    }
}
