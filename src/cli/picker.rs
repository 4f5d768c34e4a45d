//! The session picker of `resume`: type to filter (fuzzy, over title, project, id and machine),
//! arrows to move, Enter to choose, Esc to cancel. Drawn on the alternate screen in raw mode;
//! the terminal is restored however it ends.

use std::io::{Write, stdout};

use anyhow::Result;
use crossterm::cursor::{Hide, MoveTo, Show};
use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use crossterm::style::{Attribute, Print, SetAttribute};
use crossterm::terminal::{self, Clear, ClearType, EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::{execute, queue};
use nucleo_matcher::pattern::{CaseMatching, Normalization, Pattern};
use nucleo_matcher::{Config, Matcher, Utf32Str};

use crate::util::{pad, short_id, truncate, truncate_left, width};

/// One row of the picker.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: String,
    /// Machine holding the lock, if any.
    pub lock: Option<String>,
    /// Machine that last edited the session.
    pub machine: String,
    pub project: String,
    pub age: String,
    pub title: String,
    /// Why Claude Code's own picker leaves the session out (`-p`, `sidechain`, …), if it does.
    pub hidden: Option<String>,
}

impl Row {
    fn haystack(&self) -> String {
        format!(
            "{} {} {} {}",
            self.shown_title(),
            self.project,
            self.id,
            self.machine
        )
    }

    /// The title, marked when Claude Code's own picker would not offer the session.
    fn shown_title(&self) -> String {
        match &self.hidden {
            Some(why) => format!("[{why}] {}", self.title),
            None => self.title.clone(),
        }
    }
}

struct Screen;

impl Screen {
    fn enter() -> Result<Screen> {
        terminal::enable_raw_mode()?;
        let s = Screen;
        execute!(stdout(), EnterAlternateScreen, Hide)?;
        Ok(s)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = execute!(stdout(), Show, LeaveAlternateScreen);
        let _ = terminal::disable_raw_mode();
    }
}

/// Filter `rows` by `query` (fuzzy); best matches first, ties in the given order.
pub fn filter(rows: &[Row], hay: &[String], query: &str, matcher: &mut Matcher) -> Vec<usize> {
    if query.trim().is_empty() {
        return (0..rows.len()).collect();
    }
    let pattern = Pattern::parse(query, CaseMatching::Smart, Normalization::Smart);
    let mut buf = Vec::new();
    let mut scored: Vec<(u32, usize)> = hay
        .iter()
        .enumerate()
        .filter_map(|(i, h)| {
            pattern
                .score(Utf32Str::new(h, &mut buf), matcher)
                .map(|s| (s, i))
        })
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().map(|(_, i)| i).collect()
}

/// Show the picker; the index of the chosen row, or `None` when cancelled.
pub fn pick(rows: &[Row]) -> Result<Option<usize>> {
    let hay: Vec<String> = rows.iter().map(Row::haystack).collect();
    let mut matcher = Matcher::new(Config::DEFAULT);
    let _screen = Screen::enter()?;
    let mut query = String::new();
    let mut shown: Vec<usize> = (0..rows.len()).collect();
    let mut sel = 0usize;
    let mut top = 0usize;
    loop {
        let (w, h) = terminal::size().unwrap_or((80, 24));
        let (w, h) = (w as usize, h as usize);
        let list_h = h.saturating_sub(4).max(1);
        if sel < top {
            top = sel;
        } else if sel >= top + list_h {
            top = sel + 1 - list_h;
        }
        draw(rows, &shown, &query, sel, top, w, list_h)?;
        let Event::Key(k) = event::read()? else {
            continue;
        };
        if k.kind == KeyEventKind::Release {
            continue;
        }
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        match k.code {
            KeyCode::Esc => return Ok(None),
            KeyCode::Char('c') | KeyCode::Char('d') if ctrl => return Ok(None),
            KeyCode::Enter => return Ok(shown.get(sel).copied()),
            KeyCode::Up => sel = sel.saturating_sub(1),
            KeyCode::Char('p') if ctrl => sel = sel.saturating_sub(1),
            KeyCode::Down => sel = (sel + 1).min(shown.len().saturating_sub(1)),
            KeyCode::Char('n') if ctrl => sel = (sel + 1).min(shown.len().saturating_sub(1)),
            KeyCode::PageUp => sel = sel.saturating_sub(list_h),
            KeyCode::PageDown => sel = (sel + list_h).min(shown.len().saturating_sub(1)),
            KeyCode::Home => sel = 0,
            KeyCode::End => sel = shown.len().saturating_sub(1),
            KeyCode::Backspace => {
                query.pop();
                shown = filter(rows, &hay, &query, &mut matcher);
                sel = 0;
            }
            KeyCode::Char('u') if ctrl => {
                query.clear();
                shown = filter(rows, &hay, &query, &mut matcher);
                sel = 0;
            }
            KeyCode::Char(c) if !ctrl => {
                query.push(c);
                shown = filter(rows, &hay, &query, &mut matcher);
                sel = 0;
            }
            _ => {}
        }
    }
}

fn draw(
    rows: &[Row],
    shown: &[usize],
    query: &str,
    sel: usize,
    top: usize,
    w: usize,
    list_h: usize,
) -> Result<()> {
    let mut out = stdout().lock();
    queue!(out, MoveTo(0, 0), Clear(ClearType::All))?;
    let head = truncate(
        "Resume a session: type to filter, ↑/↓ to move, Enter to resume, Esc to cancel",
        w,
    );
    queue!(
        out,
        SetAttribute(Attribute::Dim),
        Print(head),
        SetAttribute(Attribute::Reset)
    )?;
    queue!(out, MoveTo(0, 1), Print(truncate(&format!("> {query}"), w)))?;
    let w_lock = 10;
    let w_id = 8;
    let w_machine = rows
        .iter()
        .map(|r| width(&r.machine))
        .max()
        .unwrap_or(7)
        .clamp(7, 14);
    let w_age = 10;
    let fixed = w_lock + w_id + w_machine + w_age + 5 * 2;
    let rest = w.saturating_sub(fixed);
    let w_proj = (rest * 2 / 5).clamp(8, 40);
    let w_title = rest.saturating_sub(w_proj).max(5);
    let header = format!(
        "{}  {}  {}  {}  {}  {}",
        pad("LOCK", w_lock),
        pad("ID", w_id),
        pad("MACHINE", w_machine),
        pad("PROJECT", w_proj),
        pad("AGE", w_age),
        "TITLE"
    );
    queue!(
        out,
        MoveTo(0, 2),
        SetAttribute(Attribute::Bold),
        Print(truncate(&header, w)),
        SetAttribute(Attribute::Reset)
    )?;
    for (line, &i) in shown.iter().enumerate().skip(top).take(list_h) {
        let r = &rows[i];
        let text = format!(
            "{}  {}  {}  {}  {}  {}",
            pad(
                &r.lock
                    .clone()
                    .map(|m| format!("🔒 {m}"))
                    .unwrap_or_default(),
                w_lock
            ),
            pad(&short_id(&r.id), w_id),
            pad(&r.machine, w_machine),
            pad(&truncate_left(&r.project, w_proj), w_proj),
            pad(&r.age, w_age),
            truncate(&r.shown_title(), w_title)
        );
        let y = (3 + line - top) as u16;
        if line == sel {
            queue!(
                out,
                MoveTo(0, y),
                SetAttribute(Attribute::Reverse),
                Print(pad(&text, w)),
                SetAttribute(Attribute::Reset)
            )?;
        } else {
            queue!(out, MoveTo(0, y), Print(truncate(&text, w)))?;
        }
    }
    let footer = format!("{}/{} sessions", shown.len(), rows.len());
    queue!(
        out,
        MoveTo(0, (3 + list_h) as u16),
        SetAttribute(Attribute::Dim),
        Print(truncate(&footer, w)),
        SetAttribute(Attribute::Reset)
    )?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, title: &str, project: &str) -> Row {
        Row {
            id: id.into(),
            lock: None,
            machine: "m".into(),
            project: project.into(),
            age: "1d".into(),
            title: title.into(),
            hidden: None,
        }
    }

    #[test]
    fn fuzzy_filter_ranks_and_keeps_recency_for_ties() {
        let rows = vec![
            row("aaaa1111", "Fix the parser", "~/p/app"),
            row("bbbb2222", "Write docs", "~/p/site"),
            row("cccc3333", "Parser tests", "~/p/app"),
        ];
        let hay: Vec<String> = rows.iter().map(Row::haystack).collect();
        let mut m = Matcher::new(Config::DEFAULT);
        assert_eq!(filter(&rows, &hay, "", &mut m), vec![0, 1, 2]);
        let p = filter(&rows, &hay, "parser", &mut m);
        assert_eq!(p.len(), 2);
        assert!(p.contains(&0) && p.contains(&2));
        assert_eq!(filter(&rows, &hay, "bbbb", &mut m), vec![1]);
        assert_eq!(filter(&rows, &hay, "site", &mut m), vec![1]);
        assert!(filter(&rows, &hay, "zzzz", &mut m).is_empty());
        let mut p = row("dddd4444", "Summarize logs", "~/p/app");
        p.hidden = Some("-p".into());
        assert_eq!(p.shown_title(), "[-p] Summarize logs");
        let rows = vec![rows[0].clone(), p];
        let hay: Vec<String> = rows.iter().map(Row::haystack).collect();
        assert_eq!(filter(&rows, &hay, "[-p]", &mut m), vec![1]);
    }
}
