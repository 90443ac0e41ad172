//! Field rules of docs/dms-api.md §3 and §4: names, descriptions, tags. Each check answers the
//! DMS code the service uses for that rule.

use super::errors::{
    DmsError, DESCRIPTION_LENGTH, GROUP_NAME_LENGTH, INVALID_DESCRIPTION_CHARS, INVALID_NAME_CHARS,
    INVALID_PROJECT_ID, INVALID_TAG, QUEUE_NAME_LENGTH,
};

const QUEUE_NAME_CHARS_MAX: usize = 64;
const GROUP_NAME_CHARS_MAX: usize = 32;
const TAG_CHARS_MAX: usize = 64;
const PROJECT_ID_CHARS: usize = 32;

fn name_chars_valid(name: &str) -> bool {
    name.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A queue name: 1-64 of `[A-Za-z0-9_-]`.
pub fn queue_name(name: &str) -> Result<(), DmsError> {
    if name.is_empty() || name.chars().count() > QUEUE_NAME_CHARS_MAX {
        return Err(DmsError::bad(
            QUEUE_NAME_LENGTH,
            "The name length must be 1 to 64 characters.",
        ));
    }
    if !name_chars_valid(name) {
        return Err(DmsError::bad(
            INVALID_NAME_CHARS,
            "The name contains invalid characters: use letters, digits, - and _.",
        ));
    }
    Ok(())
}

/// A consumer group name: 1-32 of `[A-Za-z0-9_-]`.
pub fn group_name(name: &str) -> Result<(), DmsError> {
    if name.is_empty() || name.chars().count() > GROUP_NAME_CHARS_MAX {
        return Err(DmsError::bad(
            GROUP_NAME_LENGTH,
            "The name length must be 1 to 32 characters.",
        ));
    }
    if !name_chars_valid(name) {
        return Err(DmsError::bad(
            INVALID_NAME_CHARS,
            "The name contains invalid characters: use letters, digits, - and _.",
        ));
    }
    Ok(())
}

/// A queue description: at most `chars_max` characters, no `<` or `>`.
pub fn description(text: &str, chars_max: u32) -> Result<(), DmsError> {
    if text.chars().count() > usize::try_from(chars_max).expect("u32 fits usize") {
        return Err(DmsError::bad(
            DESCRIPTION_LENGTH,
            format!("The description length must not exceed {chars_max} characters."),
        ));
    }
    if text.contains(['<', '>']) {
        return Err(DmsError::bad(
            INVALID_DESCRIPTION_CHARS,
            "The description contains invalid characters: < and > are not allowed.",
        ));
    }
    Ok(())
}

/// Tags of a message or a consume filter: at most `count_max`, each 1-64 of
/// `[A-Za-z0-9_-]`.
pub fn tags(tags: &[String], count_max: u32) -> Result<(), DmsError> {
    if tags.len() > usize::try_from(count_max).expect("u32 fits usize") {
        return Err(DmsError::bad(
            INVALID_TAG,
            format!("At most {count_max} tags are allowed."),
        ));
    }
    for tag in tags {
        let length_ok = !tag.is_empty() && tag.len() <= TAG_CHARS_MAX;
        if !length_ok || !name_chars_valid(tag) {
            return Err(DmsError::bad(
                INVALID_TAG,
                "The tag name is invalid: use 1 to 64 letters, digits, - and _.",
            ));
        }
    }
    Ok(())
}

/// A project id: 32 lower-case hex digits.
pub fn project_id(project: &str) -> Result<(), DmsError> {
    let valid = project.len() == PROJECT_ID_CHARS
        && project
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if valid {
        Ok(())
    } else {
        Err(DmsError::bad(
            INVALID_PROJECT_ID,
            "The project ID format is invalid: 32 lower-case hex digits expected.",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(result: Result<(), DmsError>) -> &'static str {
        result.err().map_or("ok", |e| e.code)
    }

    #[test]
    fn rules_answer_their_codes() {
        // Goal: each rule's edge on both sides, with the code the service uses.
        assert_eq!(code(queue_name(&"a".repeat(64))), "ok");
        assert_eq!(code(queue_name(&"a".repeat(65))), QUEUE_NAME_LENGTH);
        assert_eq!(code(queue_name("")), QUEUE_NAME_LENGTH);
        assert_eq!(code(queue_name("a b")), INVALID_NAME_CHARS);
        assert_eq!(code(group_name(&"g".repeat(32))), "ok");
        assert_eq!(code(group_name(&"g".repeat(33))), GROUP_NAME_LENGTH);
        assert_eq!(code(group_name("é")), INVALID_NAME_CHARS);
        assert_eq!(code(description(&"é".repeat(160), 160)), "ok");
        assert_eq!(code(description(&"d".repeat(161), 160)), DESCRIPTION_LENGTH);
        assert_eq!(code(description("<b>", 160)), INVALID_DESCRIPTION_CHARS);
        let three = vec!["a".to_string(), "b-c".to_string(), "D_9".to_string()];
        assert_eq!(code(tags(&three, 3)), "ok");
        assert_eq!(code(tags(&three, 2)), INVALID_TAG);
        assert_eq!(code(tags(&["".to_string()], 3)), INVALID_TAG);
        assert_eq!(code(project_id(&"ab".repeat(16))), "ok");
        assert_eq!(code(project_id(&"AB".repeat(16))), INVALID_PROJECT_ID);
    }
}
