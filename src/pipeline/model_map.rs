//! A pool's `model_map`: the request body's top-level `model` renamed for that pool's
//! provider (an alias to a deployment name), every other byte of the body kept.

use bytes::Bytes;

use crate::masking::error::BodyError;
use crate::masking::json::{self, Part, Selection, Site, StringEdit};
use crate::upstream::Pool;

/// The body with its `model` renamed as `pool` maps it; `None` when the pool maps
/// nothing, the body is not JSON, or its model is not one the map names.
pub(crate) fn mapped_body(pool: &Pool, body: &[u8]) -> Option<Bytes> {
    if pool.model_map.is_empty() {
        return None;
    }
    let mut rename = Rename(&pool.model_map);
    let mut out = Vec::new();
    match json::rewrite(body, Selection::TopLevelModel, &mut rename, &mut out) {
        Ok(true) => Some(Bytes::from(out)),
        _ => None,
    }
}

struct Rename<'a>(&'a std::collections::HashMap<String, String>);

impl StringEdit for Rename<'_> {
    fn edit(&mut self, _: &Site<'_>, text: &str, out: &mut String) -> Result<bool, BodyError> {
        match self.0.get(text) {
            Some(to) => {
                out.push_str(to);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Never called: a top-level `model` is not a content part.
    fn edit_parts(&mut self, parts: &[Part<'_>], _: &mut [String]) -> Result<Vec<bool>, BodyError> {
        Ok(vec![false; parts.len()])
    }

    fn needs_pointers(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rename(body: &str, from: &str, to: &str) -> Option<String> {
        let map = std::collections::HashMap::from([(from.to_string(), to.to_string())]);
        let mut out = Vec::new();
        let changed = json::rewrite(
            body.as_bytes(),
            Selection::TopLevelModel,
            &mut Rename(&map),
            &mut out,
        )
        .ok()?;
        changed.then(|| String::from_utf8(out).unwrap())
    }

    #[test]
    fn only_the_top_level_model_value_changes() {
        let body = "{ \"messages\": [{\"role\":\"user\",\"content\":\"gpt-4o\", \"model\": \"gpt-4o\"}],\n  \"model\" :\t\"gpt-4o\", \"stream\": true }";
        let expected = "{ \"messages\": [{\"role\":\"user\",\"content\":\"gpt-4o\", \"model\": \"gpt-4o\"}],\n  \"model\" :\t\"my-deployment\", \"stream\": true }";
        assert_eq!(
            rename(body, "gpt-4o", "my-deployment").as_deref(),
            Some(expected)
        );
    }

    #[test]
    fn escapes_are_read_and_written_as_json() {
        let body = r#"{"model":"gpt\u002d4o"}"#;
        assert_eq!(
            rename(body, "gpt-4o", "dep\"1").as_deref(),
            Some(r#"{"model":"dep\"1"}"#)
        );
    }

    #[test]
    fn other_models_and_other_bodies_are_left_alone() {
        assert_eq!(rename(r#"{"model":"llama"}"#, "gpt-4o", "x"), None);
        assert_eq!(rename(r#"{"model":5}"#, "gpt-4o", "x"), None);
        assert_eq!(rename(r#"["gpt-4o"]"#, "gpt-4o", "x"), None);
        assert_eq!(rename("not json", "gpt-4o", "x"), None);
        assert_eq!(rename(r#"{"model":"gpt-4o""#, "gpt-4o", "x"), None);
    }
}
