//! Messages in English and Chinese: one Fluent catalogue (`locales/*.ftl`) for the console
//! and the command line. The command line follows the locale (`LC_ALL`, `LC_MESSAGES`,
//! `LANG`: `zh_CN.UTF-8` gives Chinese); the console follows the browser's
//! `Accept-Language` or the language chosen on the page. English is the default. JSON
//! output and metric names are never translated.

use std::sync::OnceLock;

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};

pub const EN_FTL: &str = include_str!("../locales/en.ftl");
pub const ZH_FTL: &str = include_str!("../locales/zh-CN.ftl");

/// A language of the catalogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Lang {
    En,
    Zh,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Zh];

    /// The BCP 47 tag (`en`, `zh-CN`).
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }

    /// A locale or language tag (`zh_CN.UTF-8`, `zh-CN`, `zh`, `en_US`): Chinese for any
    /// Chinese, else none of ours.
    pub fn parse(s: &str) -> Option<Lang> {
        let lang = s
            .split(['_', '-', '.', '@'])
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match lang.as_str() {
            "zh" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The language of the command line, from the environment as POSIX orders it: the first
    /// of `LC_ALL`, `LC_MESSAGES`, `LANG` that is set decides; English otherwise.
    pub fn from_env() -> Lang {
        ["LC_ALL", "LC_MESSAGES", "LANG"]
            .iter()
            .filter_map(|k| std::env::var(k).ok())
            .find(|v| !v.is_empty())
            .and_then(|v| Lang::parse(&v))
            .unwrap_or(Lang::En)
    }

    /// The language a browser prefers among ours (`Accept-Language`, by its q-values).
    pub fn from_accept(header: &str) -> Lang {
        let mut best: Option<(f32, usize, Lang)> = None;
        for (i, part) in header.split(',').enumerate() {
            let mut it = part.split(';');
            let tag = it.next().unwrap_or("").trim();
            let q = it
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            if let Some(l) = Lang::parse(tag)
                && q > 0.0
                && best.is_none_or(|(bq, bi, _)| q > bq || (q == bq && i < bi))
            {
                best = Some((q, i, l));
            }
        }
        best.map_or(Lang::En, |b| b.2)
    }

    /// The command line's language (read once).
    pub fn cli() -> Lang {
        static CLI: OnceLock<Lang> = OnceLock::new();
        *CLI.get_or_init(Lang::from_env)
    }
}

type Bundle = FluentBundle<FluentResource>;

fn bundle(lang: Lang) -> &'static Bundle {
    static BUNDLES: OnceLock<[Bundle; 2]> = OnceLock::new();
    let all = BUNDLES.get_or_init(|| [build(Lang::En, EN_FTL), build(Lang::Zh, ZH_FTL)]);
    match lang {
        Lang::En => &all[0],
        Lang::Zh => &all[1],
    }
}

fn build(lang: Lang, text: &'static str) -> Bundle {
    let id: unic_langid::LanguageIdentifier = lang.tag().parse().unwrap_or_default();
    let mut b = FluentBundle::new_concurrent(vec![id]);
    // Terminals and HTML attributes show the isolation marks as stray characters.
    b.set_use_isolating(false);
    // The catalogue is part of the binary and tested (`every_message_is_in_both_languages`):
    // a resource that did not parse whole still gives its good messages.
    let res = match FluentResource::try_new(text.to_owned()) {
        Ok(r) => r,
        Err((r, _)) => r,
    };
    let _ = b.add_resource(res);
    b
}

/// The message `id` in `lang`, with its arguments; English when `lang` lacks it, the id
/// itself when neither has it.
pub fn text(lang: Lang, id: &str, args: &[(&str, FluentValue<'_>)]) -> String {
    let args = (!args.is_empty()).then(|| {
        let mut a = FluentArgs::new();
        for (k, v) in args {
            a.set(*k, v.clone());
        }
        a
    });
    for l in [lang, Lang::En] {
        let b = bundle(l);
        if let Some(p) = b.get_message(id).and_then(|m| m.value()) {
            let mut errors = Vec::new();
            return b.format_pattern(p, args.as_ref(), &mut errors).into_owned();
        }
    }
    id.to_owned()
}

/// `t!(lang, "id")`, `t!(lang, "id", name = value, ...)`: a message of the catalogue.
#[macro_export]
macro_rules! t {
    ($lang:expr, $id:expr) => {
        $crate::i18n::text($lang, $id, &[])
    };
    ($lang:expr, $id:expr, $($k:ident = $v:expr),+ $(,)?) => {
        $crate::i18n::text(
            $lang,
            $id,
            &[$((stringify!($k), ::fluent_bundle::FluentValue::from($v))),+],
        )
    };
}

/// `tc!("id", ...)`: a message in the command line's language.
#[macro_export]
macro_rules! tc {
    ($($rest:tt)+) => {
        $crate::t!($crate::i18n::Lang::cli(), $($rest)+)
    };
}

/// The ids of a catalogue's messages (for the test that both languages have each).
pub fn ids(text: &str) -> Result<Vec<String>, String> {
    use fluent_syntax::ast::Entry;
    let res = fluent_syntax::parser::parse(text).map_err(|(_, e)| format!("{e:?}"))?;
    Ok(res
        .body
        .iter()
        .filter_map(|e| match e {
            Entry::Message(m) => Some(m.id.name.to_owned()),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_is_in_both_languages() {
        let en = ids(EN_FTL).expect("en.ftl parses");
        let zh = ids(ZH_FTL).expect("zh-CN.ftl parses");
        assert!(en.len() > 50, "{}", en.len());
        let missing_zh: Vec<_> = en.iter().filter(|i| !zh.contains(i)).collect();
        let missing_en: Vec<_> = zh.iter().filter(|i| !en.contains(i)).collect();
        assert!(missing_zh.is_empty(), "not in zh-CN.ftl: {missing_zh:?}");
        assert!(missing_en.is_empty(), "not in en.ftl: {missing_en:?}");
        let mut seen = std::collections::HashSet::new();
        for i in &en {
            assert!(seen.insert(i), "{i} twice in en.ftl");
        }
        // Each message formats in each language without error, its arguments unnamed.
        for l in Lang::ALL {
            let b = bundle(l);
            for i in &en {
                let m = b.get_message(i).expect("message");
                let p = m.value().expect("a value");
                let mut errors = Vec::new();
                let _ = b.format_pattern(p, None, &mut errors);
                assert!(
                    errors
                        .iter()
                        .all(|e| matches!(e, fluent_bundle::FluentError::ResolverError(_))),
                    "{i} in {l:?}: {errors:?}"
                );
            }
        }
    }

    #[test]
    fn the_chinese_text_is_chinese() {
        let zh = text(Lang::Zh, "nav-rejects", &[]);
        assert!(
            zh.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
            "{zh}"
        );
        assert_ne!(zh, text(Lang::En, "nav-rejects", &[]));
    }

    #[test]
    fn languages_are_read_from_locales_and_browsers() {
        assert_eq!(Lang::parse("zh_CN.UTF-8"), Some(Lang::Zh));
        assert_eq!(Lang::parse("en_US.UTF-8"), Some(Lang::En));
        assert_eq!(Lang::parse("C.UTF-8"), None);
        assert_eq!(Lang::from_accept("zh-CN,zh;q=0.9,en;q=0.8"), Lang::Zh);
        assert_eq!(Lang::from_accept("en-US,en;q=0.9,zh-CN;q=0.8"), Lang::En);
        assert_eq!(Lang::from_accept("fr-FR, zh;q=0.5, en;q=0.4"), Lang::Zh);
        assert_eq!(Lang::from_accept("de"), Lang::En);
        assert_eq!(Lang::from_accept(""), Lang::En);
    }

    #[test]
    fn arguments_are_filled_in() {
        let s = crate::t!(Lang::En, "rejects-none");
        assert_eq!(s, "no rejected rows");
        let s = crate::t!(
            Lang::Zh,
            "status-agent-running",
            agent = "A1",
            pid = 42,
            up = "3s"
        );
        assert!(
            s.contains("A1") && s.contains("42") && s.contains("3s"),
            "{s}"
        );
    }
}
