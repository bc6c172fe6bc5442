//! Options whose value is one of a few words (`state`, `pull`, `drain_mode`, `update`,
//! `requires_on_timeout`), parsed into their enums by one rule.
//!
//! Each enum says its words once ([`Choice::word`]); the option table lists the same
//! words as the option's `choices`, which the docs and roles are held to. Reading a
//! choice ([`super::coerce::Params::choice`]) checks in debug builds that the two lists
//! are equal, and the test below reads every choice of every table row through the
//! parser, so a word added to one side only fails the tests.

/// An enum an option's words parse into, implemented with [`choice!`] in the section
/// file that reads the option.
pub(super) trait Choice: Copy + Sized + 'static {
    /// Every value, in the order of the table's `choices`.
    const ALL: &'static [Self];

    /// The word the option takes for this value.
    fn word(self) -> &'static str;

    fn from_word(word: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|value| value.word() == word)
    }
}

/// `impl Choice` for an enum, its values in the table's order: with the words written
/// here (`choice!(E { A => "a", B => "b" })`), or with the enum's own `as_str`
/// (`choice!(E [A, B] as_str)`).
macro_rules! choice {
    ($enum:ident { $($value:ident => $word:literal),+ $(,)? }) => {
        impl $crate::params::choice::Choice for $enum {
            const ALL: &'static [Self] = &[$($enum::$value),+];

            fn word(self) -> &'static str {
                match self {
                    $($enum::$value => $word),+
                }
            }
        }
    };
    ($enum:ident [$($value:ident),+ $(,)?] $word:ident) => {
        impl $crate::params::choice::Choice for $enum {
            const ALL: &'static [Self] = &[$($enum::$value),+];

            fn word(self) -> &'static str {
                self.$word()
            }
        }
    };
}
pub(super) use choice;

#[cfg(test)]
mod tests {
    use super::super::testing::request;
    use crate::options::OPTIONS;
    use serde_json::json;

    /// Every word of every row with choices is accepted for that option (a word the
    /// enum lacks would be refused, and a different list trips the check in
    /// `Params::choice`), and a word outside them is refused naming the option.
    #[test]
    fn every_choice_of_the_table_parses_into_its_enum() {
        // `play_lock` makes a call of its own (`parse_play_lock`), tested with it.
        let with_choices: Vec<_> = OPTIONS
            .iter()
            .filter(|o| !o.choices.is_empty() && o.name != "play_lock")
            .collect();
        assert!(
            with_choices.len() >= 5,
            "state, pull, drain_mode, update, ..."
        );
        for o in with_choices {
            // A service every choice applies to: announced on a port Docker picks.
            let args = |value: &str| {
                let mut args = json!({"state": "enabled", "name": "web", "image": "busybox",
                                      "announce": "auto", "port": 8080, "requires": ["db"],
                                      "wait": true});
                args[o.name] = json!(value);
                args
            };
            for word in o.choices {
                let parsed = request(args(word));
                assert!(parsed.is_ok(), "{}={word}: {:?}", o.name, parsed.err());
            }
            let err = request(args("no-such-word")).unwrap_err();
            assert_eq!(err.field, o.name);
            assert!(
                err.message.starts_with("\"no-such-word\" is not one of "),
                "{}: {}",
                o.name,
                err.message
            );
        }
    }
}
