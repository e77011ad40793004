//! Which objects a request to the API server reads or writes, from its method, path and query
//! (pure: no IO).

use std::collections::BTreeMap;

/// A resource type as the API server's paths name it (`apps`, `v1`, `deployments`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Kind {
    /// The API group (empty for the core group).
    pub group: String,
    /// The version.
    pub version: String,
    /// The plural resource name.
    pub plural: String,
}

impl Kind {
    /// `group/version`, or `version` in the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// The objects a request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Their type.
    pub kind: Kind,
    /// Their namespace (`None`: cluster-scoped, or a collection across namespaces).
    pub namespace: Option<String>,
    /// The object, or `None` for a collection.
    pub name: Option<String>,
    /// The subresource (`status`, `scale`), if any.
    pub subresource: Option<String>,
}

/// A read a watch cache may answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// One object.
    Get,
    /// A collection, with the labels its objects must carry (`a=b,c=d`; no other selector).
    List(BTreeMap<String, String>),
}

/// The target of a request path (`/api/v1/namespaces/ns/pods/name`,
/// `/apis/apps/v1/deployments`), or `None` for a path that names no resource (discovery).
pub fn target(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", namespace, rest @ ..] if !rest.is_empty() => {
            (Some((*namespace).to_owned()), rest)
        }
        _ => (None, rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, subresource] => (*plural, Some(*name), Some(*subresource)),
        _ => return None,
    };
    if version.is_empty() || plural.is_empty() || name == Some("") {
        return None;
    }
    Some(Target {
        kind: Kind {
            group: group.to_owned(),
            version: version.to_owned(),
            plural: plural.to_owned(),
        },
        namespace,
        name: name.map(str::to_owned),
        subresource: subresource.map(str::to_owned),
    })
}

/// The read a GET of `target` with `query` is, when a cache can answer it exactly: one object
/// without options, or a collection selected by labels only (no field selector, no paging, no
/// resource version, no watch).
pub fn read(target: &Target, query: Option<&str>) -> Option<Read> {
    if target.subresource.is_some() {
        return None;
    }
    let parameters: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    if target.name.is_some() {
        return parameters.is_empty().then_some(Read::Get);
    }
    let mut labels = BTreeMap::new();
    for (key, value) in parameters {
        if key != "labelSelector" {
            return None;
        }
        labels.extend(equalities(&value)?);
    }
    Some(Read::List(labels))
}

/// The requirements of a label selector made of equalities only (`a=b,c==d`), or `None` for
/// any other selector (`!=`, `in`, `notin`, an existence test).
pub fn equalities(selector: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    for requirement in selector.split(',').filter(|r| !r.trim().is_empty()) {
        let (key, value) = requirement.split_once('=')?;
        let value = value.strip_prefix('=').unwrap_or(value);
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty()
            || key.ends_with('!')
            || key.contains(' ')
            || value.contains(['=', ' ', '('])
        {
            return None;
        }
        labels.insert(key.to_owned(), value.to_owned());
    }
    Some(labels)
}

/// Whether a request asks for its objects' metadata only (`as=PartialObjectMetadata` or
/// `as=PartialObjectMetadataList` in its `Accept` header).
pub fn wants_metadata(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| accept.contains("as=PartialObjectMetadata"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(group: &str, version: &str, plural: &str) -> Kind {
        Kind {
            group: group.to_owned(),
            version: version.to_owned(),
            plural: plural.to_owned(),
        }
    }

    #[test]
    fn paths_name_their_objects() {
        let pod = target("/api/v1/namespaces/test/pods/web-1").unwrap();
        assert_eq!(pod.kind, kind("", "v1", "pods"));
        assert_eq!(pod.namespace.as_deref(), Some("test"));
        assert_eq!(pod.name.as_deref(), Some("web-1"));
        let status =
            target("/apis/canary.rs/v1alpha1/namespaces/test/rollouts/web/status").unwrap();
        assert_eq!(status.kind, kind("canary.rs", "v1alpha1", "rollouts"));
        assert_eq!(status.subresource.as_deref(), Some("status"));
        let all = target("/apis/apps/v1/deployments").unwrap();
        assert_eq!((all.namespace, all.name), (None, None));
        let mesh = target("/apis/kuma.io/v1alpha1/meshes/default").unwrap();
        assert_eq!(mesh.namespace, None);
        assert_eq!(mesh.name.as_deref(), Some("default"));
        // A Namespace object is cluster-scoped, not a namespace's collection.
        let namespace = target("/api/v1/namespaces/test").unwrap();
        assert_eq!(namespace.kind.plural, "namespaces");
        assert_eq!(namespace.name.as_deref(), Some("test"));
        for discovery in [
            "/api",
            "/apis",
            "/api/v1",
            "/apis/apps/v1",
            "/version",
            "/apis/apps/v1/a/b/c/d",
        ] {
            assert_eq!(target(discovery), None, "{discovery}");
        }
    }

    #[test]
    fn only_exact_reads_are_answered() {
        let one = target("/api/v1/namespaces/test/configmaps/app").unwrap();
        assert_eq!(read(&one, None), Some(Read::Get));
        assert_eq!(read(&one, Some("resourceVersion=0")), None);
        let pods = target("/api/v1/namespaces/test/pods").unwrap();
        let selected = read(
            &pods,
            Some("labelSelector=canary.rs%2Frole%3Dcanary%2Capp%3D%3Dweb"),
        );
        let expected: BTreeMap<String, String> = [("app", "web"), ("canary.rs/role", "canary")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        assert_eq!(selected, Some(Read::List(expected)));
        assert_eq!(read(&pods, None), Some(Read::List(BTreeMap::new())));
        for query in [
            "watch=true",
            "fieldSelector=spec.nodeName%3Dn",
            "limit=10",
            "labelSelector=app%21%3Dweb",
            "labelSelector=app+in+%28a%29",
            "labelSelector=app",
        ] {
            assert_eq!(read(&pods, Some(query)), None, "{query}");
        }
        let status = target("/apis/apps/v1/namespaces/test/deployments/web/status").unwrap();
        assert_eq!(read(&status, None), None);
    }

    #[test]
    fn metadata_requests_are_told_by_their_accept_header() {
        assert!(wants_metadata(Some(
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
        )));
        assert!(!wants_metadata(Some("application/json")));
        assert!(!wants_metadata(None));
    }
}
