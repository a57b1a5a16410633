use super::*;

#[test]
fn wait_for_service_values() {
    assert_eq!(Wait::parse(&Value::Null), Wait::Service("default".into()));
    assert_eq!(Wait::parse(&json!(true)), Wait::Service("default".into()));
    assert_eq!(Wait::parse(&json!(false)), Wait::Detached);
    assert_eq!(Wait::parse(&json!("")), Wait::Client);
    assert_eq!(Wait::parse(&json!("x:echo")), Wait::Service("echo".into()));
}

#[test]
fn app_identity_is_scoped_and_never_admin() {
    let u = app_user(&UserInfo::root(), "ws-a", "_rapp_x__rlb");
    assert!(!u.roles.iter().any(|r| r == "admin"));
    assert_eq!(u.permission("ws-a"), Some(Permission::ReadWrite));
    assert!(u.permission("ws-b").is_none());
    assert_eq!(u.scope.client_id.as_deref(), Some("_rapp_x__rlb"));
}

#[test]
fn python_eval_logs_regroup_by_type() {
    let logs = json!({"items": [{"type": "stdout", "content": "a"}, {"type": "info", "content": "b"}, {"type": "stdout", "content": "c"}]});
    assert_eq!(regroup(&logs), json!({"stdout": ["a", "c"], "info": ["b"]}));
}
