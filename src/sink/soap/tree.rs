//! A SOAP message read into a small tree of elements by their local names (prefixes and
//! namespaces aside: a province's answer says `ns2:code` one day and `code` the next), with
//! their text and whether they are `xsi:nil`.

use quick_xml::Reader;
use quick_xml::events::{BytesRef, BytesStart, Event};

/// Deepest nesting read; a deeper message is refused rather than followed.
const MAX_DEPTH: usize = 64;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Node {
    /// The local name, without its prefix.
    pub name: String,
    /// The text directly inside it, entities and character references resolved.
    pub text: String,
    pub nil: bool,
    pub children: Vec<Node>,
}

impl Node {
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The first node at a path of names below this one.
    pub fn at(&self, path: &[String]) -> Option<&Node> {
        path.iter().try_fold(self, |n, p| n.child(p))
    }

    /// Every node at a path of names below this one (the last name may repeat).
    pub fn all(&self, path: &[String]) -> Vec<&Node> {
        match path.split_first() {
            None => vec![self],
            Some((first, rest)) => self
                .children
                .iter()
                .filter(|c| &c.name == first)
                .flat_map(|c| c.all(rest))
                .collect(),
        }
    }

    /// The text of a child, where it has one.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }

    /// The SOAP body of an envelope (any SOAP version).
    pub fn body(&self) -> Option<&Node> {
        (self.name == "Envelope")
            .then(|| self.child("Body"))
            .flatten()
    }
}

/// Read a whole document into its root element.
pub fn parse(bytes: &[u8]) -> Result<Node, String> {
    let mut reader = Reader::from_reader(bytes);
    let mut stack: Vec<Node> = Vec::new();
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(s) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(format!("nested deeper than {MAX_DEPTH} elements"));
                }
                stack.push(node(&s)?);
            }
            Event::Empty(s) => {
                let n = node(&s)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(n),
                    None => return Ok(n),
                }
            }
            Event::End(_) => {
                let n = stack.pop().ok_or("an end tag without its start")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(n),
                    None => return Ok(n),
                }
            }
            Event::Text(t) => {
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&t.xml10_content());
                }
            }
            Event::CData(c) => {
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&c);
                }
            }
            Event::GeneralRef(r) => {
                if let Some(n) = stack.last_mut() {
                    n.text.push(entity(&r)?);
                }
            }
            Event::Eof => return Err("the document ends before its root element closes".into()),
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
}

fn node(s: &BytesStart<'_>) -> Result<Node, String> {
    let name = s.local_name().as_ref().to_owned();
    let mut nil = false;
    for a in s.attributes() {
        let a = a.map_err(|e| e.to_string())?;
        if a.key.local_name().as_ref() == "nil" {
            let v = a
                .normalized_value(quick_xml::XmlVersion::default())
                .map_err(|e| e.to_string())?;
            nil = matches!(v.trim(), "true" | "1");
        }
    }
    Ok(Node {
        name,
        nil,
        ..Node::default()
    })
}

/// The character of a reference: a character reference, or one of XML's five entities.
fn entity(r: &BytesRef<'_>) -> Result<char, String> {
    if let Some(c) = r.resolve_char_ref().map_err(|e| e.to_string())? {
        return Ok(c);
    }
    match &**r {
        "lt" => Ok('<'),
        "gt" => Ok('>'),
        "amp" => Ok('&'),
        "apos" => Ok('\''),
        "quot" => Ok('"'),
        other => Err(format!("unknown entity &{other};")),
    }
}
