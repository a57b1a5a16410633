use super::*;

fn strings(report: &Value, key: &str) -> Vec<String> {
    report[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

fn full(extra: Value) -> Value {
    let mut m = json!({
        "name": "App", "type": "window", "version": "0.1.0",
        "description": "d", "tags": ["t"], "entry_point": "index.html",
    });
    merge(&mut m, &extra);
    m
}

// --- validate_app_manifest ---

#[test]
fn complete_manifest_is_clean() {
    let report = validate_app_manifest(&full(json!({})));
    assert_eq!(
        report,
        json!({"valid": true, "errors": [], "warnings": [], "suggestions": []})
    );
}

#[test]
fn non_object_manifest_is_invalid() {
    for input in [json!(null), json!("x"), json!([1]), json!(3)] {
        let report = validate_app_manifest(&input);
        assert_eq!(report["valid"], json!(false));
        assert_eq!(strings(&report, "errors").len(), 1, "{input}");
    }
}

#[test]
fn missing_and_mistyped_required_fields() {
    let report = validate_app_manifest(&json!({}));
    assert_eq!(report["valid"], json!(false));
    assert_eq!(
        strings(&report, "errors"),
        [
            "Missing required field: name",
            "Missing required field: type",
            "Missing required field: version"
        ]
    );
    assert_eq!(strings(&report, "suggestions").len(), 2);
    let report = validate_app_manifest(&json!({"name": 1, "type": null, "version": 0.1}));
    let errors = strings(&report, "errors");
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].contains("'name' must be a string"));
    assert_eq!(errors[1], "Missing required field: type");
    assert!(errors[2].contains("'version' must be a string"));
    let report = validate_app_manifest(&full(json!({"type": ["window"]})));
    assert!(strings(&report, "errors")[0].contains("'type' must be a string"));
}

#[test]
fn unknown_type_is_only_a_warning() {
    let report = validate_app_manifest(&full(json!({"type": "spaceship"})));
    assert_eq!(report["valid"], json!(true));
    let warnings = strings(&report, "warnings");
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("'spaceship'"));
    for t in KNOWN_APP_TYPES.iter().chain(WORKER_APP_TYPES.iter()) {
        let extra = match *t {
            "mcp-server" => json!({"mcpServers": {"s": {"type": "stdio", "url": "x"}}}),
            "a2a-agent" => json!({"a2aAgents": {"a": {"url": "https://a"}}}),
            _ => json!({}),
        };
        let mut m = full(extra);
        m["type"] = json!(t);
        let report = validate_app_manifest(&m);
        assert_eq!(
            report,
            json!({"valid": true, "errors": [], "warnings": [], "suggestions": []}),
            "{t}"
        );
    }
}

#[test]
fn mcp_server_rules() {
    let mcp = |servers: Value| {
        validate_app_manifest(&full(json!({"type": "mcp-server", "mcpServers": servers})))
    };
    for bad in [json!(null), json!({}), json!([1]), json!("x")] {
        let report = mcp(bad.clone());
        assert_eq!(report["valid"], json!(false), "{bad}");
        assert!(strings(&report, "errors")[0].contains("mcpServers"));
    }
    let report = validate_app_manifest(&full(json!({"type": "mcp-server"})));
    assert_eq!(report["valid"], json!(false));
    let report = mcp(json!({"a": 1, "b": {"url": "http://x"}, "c": {"type": "sse"}}));
    let errors = strings(&report, "errors");
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].contains("'a' must be an object"));
    assert_eq!(errors[1], "MCP server 'b' is missing 'type'");
    assert_eq!(errors[2], "MCP server 'c' is missing 'url'");
    assert_eq!(strings(&report, "warnings").len(), 1);
    assert!(strings(&report, "warnings")[0].contains("\"sse\""));
    let report = mcp(json!({"s": {"type": "streamable-http", "url": "https://m/mcp"}}));
    assert_eq!(report["valid"], json!(true));
    assert!(strings(&report, "warnings").is_empty());
}

#[test]
fn a2a_agent_rules() {
    let a2a = |agents: Value| {
        validate_app_manifest(&full(json!({"type": "a2a-agent", "a2aAgents": agents})))
    };
    for bad in [json!(null), json!({}), json!(["x"])] {
        assert_eq!(a2a(bad.clone())["valid"], json!(false), "{bad}");
    }
    let report = a2a(json!({
        "a": "x",
        "b": {},
        "c": {"url": 5},
        "d": {"url": "ftp://d", "headers": []},
        "e": {"url": "http://e", "headers": {"k": "v"}},
    }));
    let errors = strings(&report, "errors");
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(errors[0].contains("'a' must be an object"));
    assert_eq!(errors[1], "A2A agent 'b' is missing 'url'");
    assert!(errors[2].contains("'c' url must be a string"));
    assert!(errors[3].contains("'d' headers must be an object"));
    let warnings = strings(&report, "warnings");
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("ftp://d"));
}

#[test]
fn entry_point_and_suggestions() {
    let report = validate_app_manifest(&full(json!({"entry_point": "source"})));
    assert_eq!(report["valid"], json!(true));
    assert!(strings(&report, "warnings")[0].contains("entry_point 'source'"));
    for ok in ["main.py", "app.js", "index.html"] {
        let report = validate_app_manifest(&full(json!({"entry_point": ok})));
        assert!(strings(&report, "warnings").is_empty(), "{ok}");
    }
    let report = validate_app_manifest(&full(json!({"entry_point": 3})));
    assert_eq!(report["valid"], json!(false));
    let report = validate_app_manifest(&full(json!({"description": "", "tags": []})));
    assert_eq!(report["valid"], json!(true));
    let suggestions = strings(&report, "suggestions");
    assert_eq!(suggestions.len(), 2);
    assert!(suggestions[0].contains("description"));
    assert!(suggestions[1].contains("tags"));
}

// --- merge ---

#[test]
fn merge_is_shallow() {
    let mut base = json!({"a": 1, "nested": {"x": 1, "y": 2}});
    merge(&mut base, &json!({"b": 2, "nested": {"x": 9}}));
    assert_eq!(base, json!({"a": 1, "b": 2, "nested": {"x": 9}}));
    merge(&mut base, &json!("not a map"));
    assert_eq!(base["a"], json!(1));
    let mut base = json!(null);
    merge(&mut base, &json!({"a": 1}));
    assert_eq!(base, json!({"a": 1}));
}

// --- check_installable ---

#[test]
fn installable_manifests() {
    assert_eq!(check_installable(&json!({"type": "window"}), false), Ok(()));
    assert_eq!(check_installable(&json!({"type": "hypha"}), true), Ok(()));
}

#[test]
fn install_refusals() {
    let err = |m: Value, src: bool| check_installable(&m, src).unwrap_err();
    assert!(
        err(json!({"type": "window", "services": []}), true).contains("'services' is not allowed")
    );
    assert!(err(json!({"type": "window", "service_ids": []}), true)
        .contains("'service_ids' is not allowed"));
    // `services` is refused before the type is looked at.
    assert!(err(json!({"services": []}), true).contains("not allowed"));
    assert!(err(json!({"name": "x"}), true).contains("no 'type'"));
    assert!(err(json!({"type": null}), true).contains("no 'type'"));
    assert!(err(json!({"type": " "}), true).contains("empty"));
    assert!(err(json!({"type": "application"}), true).contains("'application'"));
    assert!(err(json!({"type": 7}), true).contains("must be a string"));
    assert!(err(json!({"type": "hypha"}), false).contains("needs a source"));
    assert!(err(json!([]), true).contains("must be an object"));
}

// --- autoscaling ---

#[test]
fn autoscaling_absent_or_falsy_is_none() {
    for m in [
        json!({}),
        json!({"autoscaling": null}),
        json!({"autoscaling": false}),
        json!({"autoscaling": {}}),
        json!("not a manifest"),
    ] {
        assert_eq!(autoscaling(&m), Ok(None), "{m}");
    }
}

#[test]
fn autoscaling_defaults_and_values() {
    let config = autoscaling(&json!({"autoscaling": {"enabled": true}}))
        .unwrap()
        .unwrap();
    assert_eq!(
        config,
        AutoscalingConfig {
            enabled: true,
            ..AutoscalingConfig::default()
        }
    );
    assert_eq!(config.min_instances, 1);
    assert_eq!(config.max_instances, 10);
    assert_eq!(config.target_requests_per_instance, 100.0);
    assert_eq!(config.scale_up_threshold, 0.9);
    assert_eq!(config.scale_down_threshold, 0.3);
    assert_eq!(config.scale_up_cooldown, 300.0);
    assert_eq!(config.scale_down_cooldown, 600.0);
    let config = autoscaling(&json!({"autoscaling": {
        "enabled": true, "min_instances": 2, "max_instances": 5.0,
        "target_requests_per_instance": 30, "scale_up_threshold": 0.8,
        "scale_down_threshold": null, "scale_up_cooldown": 1.5, "scale_down_cooldown": 0,
        "metric_type": "load", "target_load_per_instance": 0.8,
    }}))
    .unwrap()
    .unwrap();
    assert_eq!(
        config,
        AutoscalingConfig {
            enabled: true,
            min_instances: 2,
            max_instances: 5,
            target_requests_per_instance: 30.0,
            scale_up_threshold: 0.8,
            scale_down_threshold: 0.3,
            scale_up_cooldown: 1.5,
            scale_down_cooldown: 0.0,
            ..AutoscalingConfig::default()
        }
    );
    // Round trip through serde, as the monitor may store it.
    let back: AutoscalingConfig =
        serde_json::from_value(serde_json::to_value(&config).unwrap()).unwrap();
    assert_eq!(back, config);
    let partial: AutoscalingConfig = serde_json::from_value(json!({"enabled": true})).unwrap();
    assert_eq!(partial.max_instances, 10);
}

#[test]
fn autoscaling_errors() {
    let err = |a: Value| autoscaling(&json!({"autoscaling": a})).unwrap_err();
    assert!(err(json!(true)).contains("must be an object"));
    assert!(err(json!("on")).contains("must be an object"));
    assert!(err(json!({"enabled": "yes"})).contains("autoscaling.enabled"));
    assert!(err(json!({"min_instances": -1})).contains("autoscaling.min_instances"));
    assert!(err(json!({"max_instances": 2.5})).contains("autoscaling.max_instances"));
    assert!(err(json!({"max_instances": "3"})).contains("autoscaling.max_instances"));
    assert!(err(json!({"max_instances": 0})).contains("at least 1"));
    assert!(err(json!({"scale_up_threshold": "high"})).contains("scale_up_threshold"));
    assert!(err(json!({"scale_down_cooldown": -5})).contains("scale_down_cooldown"));
    assert!(err(json!({"target_requests_per_instance": 0}))
        .contains("target_requests_per_instance must be greater than 0"));
    assert_eq!(
        err(json!({"min_instances": 4, "max_instances": 3})),
        "autoscaling.min_instances (4) must not exceed autoscaling.max_instances (3)"
    );
    assert!(err(json!({"max_instances": 5_000_000_000u64})).contains("max_instances"));
}

#[test]
fn autoscaling_concurrency_and_panic_fields() {
    // The metric picks the defaults of the fields left out.
    let config =
        autoscaling(&json!({"autoscaling": {"enabled": true, "metric_type": "concurrency"}}))
            .unwrap()
            .unwrap();
    assert_eq!(
        config,
        AutoscalingConfig {
            enabled: true,
            ..AutoscalingConfig::defaults_for(MetricType::Concurrency)
        }
    );
    assert_eq!(config.metric_type, MetricType::Concurrency);
    assert_eq!(config.scale_up_cooldown, 5.0);
    assert_eq!(config.scale_down_cooldown, 30.0);
    assert_eq!(config.stable_window, 30.0);
    assert_eq!(config.target_concurrency_per_instance, 10.0);
    assert_eq!(config.panic_threshold, 2.0);
    let load = AutoscalingConfig::default();
    assert_eq!(load.metric_type, MetricType::Load);
    assert_eq!(load.stable_window, 60.0);
    // Given values win; the serde form round-trips.
    let config = autoscaling(&json!({"autoscaling": {
        "metric_type": "concurrency", "target_concurrency_per_instance": 4,
        "panic_threshold": 3, "stable_window": 12.5, "scale_up_cooldown": 0,
    }}))
    .unwrap()
    .unwrap();
    assert_eq!(config.target_concurrency_per_instance, 4.0);
    assert_eq!(config.panic_threshold, 3.0);
    assert_eq!(config.stable_window, 12.5);
    assert_eq!(config.scale_up_cooldown, 0.0);
    let value = serde_json::to_value(&config).unwrap();
    assert_eq!(value["metric_type"], "concurrency");
    assert_eq!(
        serde_json::from_value::<AutoscalingConfig>(value).unwrap(),
        config
    );
    // Refusals name the field.
    let err = |a: Value| autoscaling(&json!({"autoscaling": a})).unwrap_err();
    assert!(err(json!({"metric_type": "cpu"})).contains("autoscaling.metric_type"));
    assert!(err(json!({"metric_type": 1})).contains("autoscaling.metric_type"));
    assert!(err(json!({"target_concurrency_per_instance": 0}))
        .contains("target_concurrency_per_instance must be greater than 0"));
    assert!(err(json!({"stable_window": 0})).contains("stable_window must be greater than 0"));
    assert!(err(json!({"panic_threshold": 1})).contains("panic_threshold must be greater than 1"));
    assert_eq!(
        err(json!({"scale_up_threshold": 0.3, "scale_down_threshold": 0.5})),
        "autoscaling.scale_down_threshold (0.5) must be below autoscaling.scale_up_threshold (0.3)"
    );
}

// --- startup_config ---

#[test]
fn startup_config_parse_overlay_and_json() {
    let mut config = StartupConfig::from_manifest(&json!({"startup_config": {
        "timeout": 30, "wait_for_service": "svc", "stop_after_inactive": 0, "other": 1,
    }}))
    .unwrap();
    assert_eq!(
        config,
        StartupConfig {
            timeout: Some(30.0),
            wait_for_service: Some(json!("svc")),
            additional_kwargs: None,
            stop_after_inactive: Some(0.0),
        }
    );
    config.overlay(&StartupConfig {
        timeout: None,
        wait_for_service: Some(json!(false)),
        additional_kwargs: Some(json!({"k": 1})),
        stop_after_inactive: Some(12.5),
    });
    assert_eq!(
        config.to_json(),
        json!({"timeout": 30, "wait_for_service": false, "additional_kwargs": {"k": 1},
               "stop_after_inactive": 12.5})
    );
    assert_eq!(StartupConfig::default().to_json(), json!({}));
    assert_eq!(
        StartupConfig::from_manifest(&json!({})),
        Ok(StartupConfig::default())
    );
    assert_eq!(
        StartupConfig::from_json(&json!({"timeout": null, "wait_for_service": true})),
        Ok(StartupConfig {
            wait_for_service: Some(json!(true)),
            ..StartupConfig::default()
        })
    );
}

#[test]
fn startup_config_errors() {
    let err = |v: Value| StartupConfig::from_json(&v).unwrap_err();
    assert!(err(json!([])).contains("'startup_config' must be an object"));
    assert!(err(json!({"timeout": "60"})).contains("startup_config.timeout"));
    assert!(err(json!({"timeout": -1})).contains("startup_config.timeout"));
    assert!(err(json!({"stop_after_inactive": "x"})).contains("stop_after_inactive"));
    assert!(err(json!({"wait_for_service": 3})).contains("wait_for_service"));
    assert!(err(json!({"additional_kwargs": [1]})).contains("additional_kwargs"));
    assert!(StartupConfig::from_manifest(&json!({"startup_config": 5})).is_err());
}
