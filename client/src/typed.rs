//! Services whose functions are typed async closures ([`Client::service`]).
//!
//! A function takes one argument type `A` (a struct with named fields, deriving
//! `serde::Deserialize` and `schemars::JsonSchema`) and returns `Result<R, E>` with `R:
//! Serialize`. The call's arguments become an `A` as hypha-rpc callers pass them:
//! keyword arguments by field name, positional arguments onto the fields in declaration
//! order, or one positional map of field names; both kinds may be mixed. The schema of
//! `A` is what callers see as the function's `_rschema` (`{name, description,
//! parameters}`, hypha-rpc's `schema_function` shape) and in the record's
//! `service_schema`, so Python's `svc.add.__schema__`, the MCP endpoints and the
//! agent-skills pages describe it.
//!
//! Values cross as JSON (through `serde_json::Value`): msgpack binary arrives as a list of
//! numbers, and a result that does not serialize to JSON fails the call.

use crate::generator::GeneratorHost;
use crate::{handler, Client, Handler, RpcError};
use futures_util::{Stream, StreamExt};
use rhizo_protocol::message::Call;
use rhizo_protocol::value::{from_json, to_json};
use schemars::JsonSchema;
use serde::de::{DeserializeOwned, Visitor};
use serde::Serialize;
use serde_json::{json, Map, Value as Json};
use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;

/// The `_rschema` of a function `name` documented by `doc` whose arguments are an `A`:
/// `{name, description: doc, parameters}`, `parameters` the JSON schema of `A` with
/// subschemas inlined and without `$schema` and `title`.
///
/// ```
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct AddArgs {
///     /// The first number.
///     a: i64,
///     b: i64,
/// }
/// let s = rhizo_client::function_schema::<AddArgs>("add", "Add two numbers.");
/// assert_eq!(s["name"], "add");
/// assert_eq!(s["parameters"]["properties"]["a"]["type"], "integer");
/// assert_eq!(s["parameters"]["required"], serde_json::json!(["a", "b"]));
/// ```
pub fn function_schema<A: JsonSchema>(name: &str, doc: &str) -> Json {
    let mut parameters = schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .into_generator()
        .into_root_schema_for::<A>()
        .to_value();
    if let Some(o) = parameters.as_object_mut() {
        o.remove("$schema");
        o.remove("title");
    }
    json!({"name": name, "description": doc, "parameters": parameters})
}

/// Builds a service of typed functions and registers it ([`Client::service`]).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use rhizo_client::{Client, ConnectOptions, RpcError};
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct AddArgs {
///     a: i64,
///     b: i64,
/// }
///
/// let client = Client::connect("http://127.0.0.1:9527", ConnectOptions::default()).await?;
/// let id = client
///     .service("calc")
///     .config(serde_json::json!({"visibility": "public"}))
///     .description("A calculator.")
///     .function("add", "Add two numbers.", |args: AddArgs| async move {
///         Ok::<_, RpcError>(args.a + args.b)
///     })
///     .register()
///     .await?;
/// println!("registered {id}");
/// # Ok(())
/// # }
/// ```
#[must_use = "a service builder does nothing until `.register().await`"]
pub struct ServiceBuilder<'a> {
    client: &'a Client,
    id: String,
    /// Record fields (`config`, `name`, `description`, `docs`), in the order set.
    fields: Vec<(String, Json)>,
    functions: Vec<Function>,
}

/// Who called a typed function, as the server stamped it (protocol.md §3.3).
#[derive(Debug, Clone, PartialEq)]
pub struct CallContext {
    /// The caller's `"<ws>/<client>"`.
    pub from: String,
    /// The caller's workspace.
    pub ws: String,
    /// The caller's user record (`id`, `is_anonymous`, `email`, `roles`, …).
    pub user: Json,
}

struct Function {
    name: String,
    doc: String,
    schema: Json,
    handler: Handler,
}

impl Client {
    /// Starts a service `id` of typed functions; see [`ServiceBuilder`].
    pub fn service(&self, id: &str) -> ServiceBuilder<'_> {
        ServiceBuilder {
            client: self,
            id: id.to_owned(),
            fields: Vec::new(),
            functions: Vec::new(),
        }
    }
}

impl<'a> ServiceBuilder<'a> {
    fn field(mut self, key: &str, value: Json) -> Self {
        self.fields.retain(|(k, _)| k != key);
        self.fields.push((key.to_owned(), value));
        self
    }

    /// The service config, e.g. `{"visibility": "public", "require_context": false}`.
    pub fn config(self, config: Json) -> Self {
        self.field("config", config)
    }

    /// The display name (default: the id).
    pub fn name(self, name: &str) -> Self {
        self.field("name", name.into())
    }

    /// The one-line description.
    pub fn description(self, description: &str) -> Self {
        self.field("description", description.into())
    }

    /// Longer documentation (the record's `docs`).
    pub fn docs(self, docs: &str) -> Self {
        self.field("docs", docs.into())
    }

    /// Adds function `name`, documented by `doc`, that runs `f` on the call's arguments
    /// decoded as an `A` (see the module docs for how positional and keyword arguments
    /// map onto `A`). Its error's text is what the caller receives; arguments that do not
    /// decode are rejected with `TypeError: <name>() …` without running `f`. A later
    /// function of the same name replaces an earlier one.
    pub fn function<A, R, E, F, Fut>(self, name: &str, doc: &str, f: F) -> Self
    where
        A: DeserializeOwned + JsonSchema + Send + 'static,
        R: Serialize,
        E: Display,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
    {
        self.function_with_context(name, doc, move |args: A, _: CallContext| f(args))
    }

    /// Like [`ServiceBuilder::function`], for a function that also gets the caller's
    /// trusted [`CallContext`] (stamped by the server, not by the caller).
    pub fn function_with_context<A, R, E, F, Fut>(mut self, name: &str, doc: &str, f: F) -> Self
    where
        A: DeserializeOwned + JsonSchema + Send + 'static,
        R: Serialize,
        E: Display,
        F: Fn(A, CallContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
    {
        let fields = struct_fields::<A>();
        let f = Arc::new(f);
        let fname: Arc<str> = name.into();
        let h = handler(move |call: Call| {
            let f = f.clone();
            let fname = fname.clone();
            async move {
                let args = arguments(&call, fields, &fname)?;
                let args: A = serde_json::from_value(args)
                    .map_err(|e| format!("TypeError: {fname}() invalid arguments: {e}"))?;
                let ctx = CallContext {
                    from: call.from,
                    ws: call.ws,
                    user: to_json(&call.user),
                };
                let out = f(args, ctx).await.map_err(|e| e.to_string())?;
                let out = serde_json::to_value(out)
                    .map_err(|e| format!("TypeError: {fname}() result not serializable: {e}"))?;
                Ok(from_json(&out))
            }
        });
        self.functions.retain(|g| g.name != name);
        self.functions.push(Function {
            name: name.to_owned(),
            doc: doc.to_owned(),
            schema: function_schema::<A>(name, doc),
            handler: h,
        });
        self
    }

    /// Adds generator function `name`, documented by `doc`: `f` turns the call's arguments
    /// (decoded as for [`ServiceBuilder::function`]) into a stream whose items the caller
    /// iterates as a remote generator — in Python, `async for x in await svc.name(...)`;
    /// in Rust, [`crate::ServiceProxy::call_stream`]. The stream is dropped when it ends,
    /// when the caller stops early (hypha-rpc's `close`), or after
    /// [`crate::GENERATOR_IDLE`] without a request for the next item. An item that does
    /// not serialize to JSON fails that request and ends the stream.
    pub fn generator<A, T, F, S>(self, name: &str, doc: &str, f: F) -> Self
    where
        A: DeserializeOwned + JsonSchema + Send + 'static,
        T: Serialize + Send + 'static,
        F: Fn(A) -> S + Send + Sync + 'static,
        S: Stream<Item = T> + Send + 'static,
    {
        self.try_generator(name, doc, move |args: A| {
            f(args).map(Ok::<T, std::convert::Infallible>)
        })
    }

    /// Like [`ServiceBuilder::generator`], for a stream of `Result`s: an `Err` item fails
    /// the caller's request for it with the error's text (a Python caller's `async for`
    /// raises it) and ends the stream.
    pub fn try_generator<A, T, E, F, S>(mut self, name: &str, doc: &str, f: F) -> Self
    where
        A: DeserializeOwned + JsonSchema + Send + 'static,
        T: Serialize + Send + 'static,
        E: Display + Send + 'static,
        F: Fn(A) -> S + Send + Sync + 'static,
        S: Stream<Item = Result<T, E>> + Send + 'static,
    {
        let fields = struct_fields::<A>();
        let f = Arc::new(f);
        let fname: Arc<str> = name.into();
        let host = GeneratorHost::of(self.client);
        let h = handler(move |call: Call| {
            let (f, fname, host) = (f.clone(), fname.clone(), host.clone());
            async move {
                let args = arguments(&call, fields, &fname)?;
                let args: A = serde_json::from_value(args)
                    .map_err(|e| format!("TypeError: {fname}() invalid arguments: {e}"))?;
                let items = f(args).map(move |item| {
                    let item = item.map_err(|e| e.to_string())?;
                    let item = serde_json::to_value(item)
                        .map_err(|e| format!("TypeError: {fname}() item not serializable: {e}"))?;
                    Ok(from_json(&item))
                });
                Ok(host.serve(&call.from, items.boxed()))
            }
        });
        self.functions.retain(|g| g.name != name);
        self.functions.push(Function {
            name: name.to_owned(),
            doc: doc.to_owned(),
            schema: function_schema::<A>(name, doc),
            handler: h,
        });
        self
    }

    /// Registers the service with the manager (its record carries `service_schema`:
    /// function name → `{type: "function", function: <schema>}`); the full service id
    /// `<ws>/<client>:<id>`.
    ///
    /// Errors: the manager's refusal ([`RpcError::Remote`]), or the connection's.
    pub async fn register(self) -> Result<String, RpcError> {
        let mut fields = Map::new();
        for (k, v) in self.fields {
            fields.insert(k, v);
        }
        let service_schema: Map<String, Json> = self
            .functions
            .iter()
            .map(|f| {
                let entry = json!({"type": "function", "function": f.schema});
                (f.name.clone(), entry)
            })
            .collect();
        fields.insert("service_schema".into(), Json::Object(service_schema));
        let docs = self
            .functions
            .iter()
            .map(|f| (f.name.clone(), f.doc.clone(), from_json(&f.schema)))
            .collect();
        let functions = self
            .functions
            .iter()
            .map(|f| (f.name.as_str(), f.handler.clone()))
            .collect();
        let fields = from_json(&Json::Object(fields));
        Ok(self
            .client
            .register_described(&self.id, fields, functions, docs)
            .await?)
    }
}

/// The call's arguments as the JSON object (or value) an `A` decodes from. `fields` are
/// `A`'s field names in declaration order when `A` is a struct with named fields.
fn arguments(call: &Call, fields: Option<&[&str]>, fname: &str) -> Result<Json, String> {
    let mut kwargs = Map::new();
    for (k, v) in &call.kwargs {
        if let Some(k) = k.as_str() {
            kwargs.insert(k.to_owned(), to_json(v));
        }
    }
    let args = &call.args;
    let Some(fields) = fields else {
        // Not a struct: the one positional argument, or the keyword arguments as a map.
        return match args.len() {
            0 => Ok(Json::Object(kwargs)),
            1 if kwargs.is_empty() => Ok(to_json(&args[0])),
            n => Err(format!(
                "TypeError: {fname}() takes 1 positional argument but {n} were given"
            )),
        };
    };
    // One positional map of field names is the whole argument object.
    if let [rmpv::Value::Map(m)] = args.as_slice() {
        let all_fields = m
            .iter()
            .all(|(k, _)| k.as_str().is_some_and(|k| fields.contains(&k)));
        if kwargs.is_empty() && all_fields {
            return Ok(to_json(&args[0]));
        }
    }
    if args.len() > fields.len() {
        return Err(format!(
            "TypeError: {fname}() takes {} positional arguments but {} were given",
            fields.len(),
            args.len()
        ));
    }
    let mut obj: Map<String, Json> = fields
        .iter()
        .zip(args)
        .map(|(k, v)| ((*k).to_owned(), to_json(v)))
        .collect();
    for (k, v) in kwargs {
        if obj.contains_key(&k) {
            return Err(format!(
                "TypeError: {fname}() got multiple values for argument '{k}'"
            ));
        }
        obj.insert(k, v);
    }
    Ok(Json::Object(obj))
}

/// The field names of `A` in declaration order (as serde spells them, renames applied)
/// when it deserializes as a struct with named fields; `None` otherwise.
fn struct_fields<A: DeserializeOwned>() -> Option<&'static [&'static str]> {
    let mut fields = None;
    let _ = A::deserialize(FieldProbe(&mut fields));
    fields
}

/// A deserializer that records the field list a struct asks it for and fails every
/// request.
struct FieldProbe<'a>(&'a mut Option<&'static [&'static str]>);

#[derive(Debug)]
struct Probed;

impl Display for Probed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("probed")
    }
}

impl std::error::Error for Probed {}

impl serde::de::Error for Probed {
    fn custom<T: Display>(_: T) -> Self {
        Probed
    }
}

impl<'de> serde::Deserializer<'de> for FieldProbe<'_> {
    type Error = Probed;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Probed> {
        Err(Probed)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Probed> {
        *self.0 = Some(fields);
        Err(Probed)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
        identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhizo_protocol::message::Promise;
    use rmpv::Value;
    use std::collections::HashMap;

    #[derive(serde::Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Args {
        b: i64,
        #[serde(rename = "alpha")]
        a: String,
        c: Option<bool>,
    }

    fn call(args: Vec<Value>, kwargs: Vec<(&str, Value)>) -> Call {
        Call {
            method: "services.s.f".into(),
            from: "ws/c".into(),
            ws: "ws".into(),
            user: Value::Nil,
            session: None,
            args,
            kwargs: kwargs.into_iter().map(|(k, v)| (k.into(), v)).collect(),
            promise: Promise::None,
        }
    }

    #[test]
    fn struct_fields_come_in_declaration_order_with_renames() {
        assert_eq!(struct_fields::<Args>(), Some(&["b", "alpha", "c"][..]));
        assert_eq!(struct_fields::<i64>(), None);
        assert_eq!(struct_fields::<HashMap<String, i64>>(), None);
    }

    #[test]
    fn positional_and_keyword_arguments_map_onto_fields() {
        let fields = struct_fields::<Args>();
        let got = arguments(
            &call(vec![1.into()], vec![("alpha", "x".into())]),
            fields,
            "f",
        );
        assert_eq!(got, Ok(json!({"b": 1, "alpha": "x"})));
        let one_map = Value::Map(vec![("alpha".into(), "y".into())]);
        let got = arguments(&call(vec![one_map], vec![]), fields, "f");
        assert_eq!(got, Ok(json!({"alpha": "y"})));
        let got = arguments(&call(vec![1.into(); 4], vec![]), fields, "f");
        assert_eq!(
            got,
            Err("TypeError: f() takes 3 positional arguments but 4 were given".into())
        );
        let got = arguments(&call(vec![1.into()], vec![("b", 2.into())]), fields, "f");
        assert_eq!(
            got,
            Err("TypeError: f() got multiple values for argument 'b'".into())
        );
        // Not a struct: the single positional value as is.
        assert_eq!(
            arguments(&call(vec![7.into()], vec![]), None, "f"),
            Ok(json!(7))
        );
    }

    #[test]
    fn the_schema_has_the_hypha_rpc_shape() {
        let s = function_schema::<Args>("f", "Does f.");
        assert_eq!(s["name"], "f");
        assert_eq!(s["description"], "Does f.");
        let p = &s["parameters"];
        assert_eq!(p["type"], "object");
        assert!(p.get("$schema").is_none());
        assert!(p["properties"]["alpha"].is_object());
        assert_eq!(p["required"], json!(["b", "alpha"]));
    }
}
