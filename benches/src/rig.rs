//! The stages a probe runs on: dispatch off, the bare-kernel floor, or the
//! engine as the benches install it. All three share the measuring thread,
//! so entering a stage undoes what the others left (the floor replaces the
//! engine's SIGSYS handler and arming; leaving it gives both back), which
//! lets the runner interleave floor and engine rounds in one process.

use crate::error::{BenchError, Result};
use crate::floor;
use crate::probe::Setting;
use crate::sys::{EMPTY_HOOK_NR, PASS_HOOK_NR};
use std::sync::OnceLock;
use sud_engine::{Engine, Selector, SyscallSet, Verdict};

/// The engine as every probe sees it: it watches [`EMPTY_HOOK_NR`] and
/// [`PASS_HOOK_NR`] with one pre-hook that runs the first unchanged and the
/// second with its arguments passed through `RunWith`; every other number is
/// unwatched. On x86-64 its excluded region is a sud-codegen code cache (so
/// the direct-hook stub can live there); elsewhere the engine's own gadget
/// page. Installed on first use; fails if someone else installed one.
pub fn engine() -> Result<&'static Engine> {
    // A failed install is kept as text, so every later caller gets it again.
    static OURS: OnceLock<std::result::Result<&'static Engine, String>> = OnceLock::new();
    let installed = OURS.get_or_init(|| {
        let mut watched = SyscallSet::empty();
        watched.insert(EMPTY_HOOK_NR).insert(PASS_HOOK_NR);
        let builder = Engine::builder();
        #[cfg(target_arch = "x86_64")]
        let builder = builder.placement(code_cache().map_err(|e| e.to_string())?.placement());
        builder
            .watch(watched)
            // For `rewritten_site`; the other probes issue no rewritable site.
            .rewrite_sites(true)
            .pre_hook(|call| {
                // One compare decides between the two watched probes.
                if call.nr == PASS_HOOK_NR {
                    Verdict::RunWith(call.args)
                } else {
                    Verdict::Run
                }
            })
            .install()
            .map_err(|e| BenchError::Engine(e).to_string())
    });
    installed.clone().map_err(BenchError::Setup)
}

/// The code cache the engine excludes, made on first use.
#[cfg(target_arch = "x86_64")]
pub fn code_cache() -> Result<&'static sud_codegen::CodeCache> {
    static CACHE: OnceLock<
        std::result::Result<&'static sud_codegen::CodeCache, sud_codegen::Error>,
    > = OnceLock::new();
    let made = CACHE.get_or_init(|| {
        // Room for the gadgets and a few stubs and loops; address space only.
        let cache = sud_codegen::CodeCache::new(1 << 20)?;
        Ok(&*Box::leak(Box::new(cache)))
    });
    made.clone().map_err(BenchError::Codegen)
}

/// A stage entered on the calling thread; [`Stage::leave`] restores the
/// engine's arming where the stage had taken it away.
pub struct Stage {
    floor: Option<floor::Session>,
    rearm: Option<&'static Engine>,
}

impl Stage {
    /// Prepares the calling thread for probes of `setting`.
    pub fn enter(setting: Setting) -> Result<Stage> {
        let armed_engine = Engine::installed().filter(|e| e.is_current_thread_armed());
        let mut stage = Stage {
            floor: None,
            rearm: None,
        };
        match setting {
            Setting::DispatchOff => {
                if let Some(engine) = armed_engine {
                    engine.disarm_current_thread()?;
                    stage.rearm = Some(engine);
                }
            }
            Setting::Floor(flags) => {
                stage.rearm = armed_engine;
                stage.floor = Some(floor::Session::enter(flags)?);
            }
            Setting::Engine => {
                let engine = engine()?;
                if !engine.is_current_thread_armed() {
                    engine.arm_current_thread(Selector::Allow)?;
                }
            }
            Setting::Child | Setting::Pending => {}
        }
        Ok(stage)
    }

    /// Leaves the stage: the floor is removed, the engine re-armed.
    pub fn leave(mut self) -> Result<()> {
        if let Some(session) = self.floor.take() {
            session.leave()?;
        }
        if let Some(engine) = self.rearm.take() {
            engine.arm_current_thread(Selector::Allow)?;
        }
        Ok(())
    }
}

/// The loop of direct-call sites (sud-codegen's bench loop: selector BLOCK,
/// `n` sites calling one direct stub that saves `vectors`, selector ALLOW),
/// emitted into the code cache on first use.
#[cfg(target_arch = "x86_64")]
pub fn direct_site_loop(
    vectors: sud_codegen::VectorState,
) -> Result<&'static sud_codegen::bench::DirectSiteLoop<'static>> {
    use sud_codegen::bench::DirectSiteLoop;
    use sud_codegen::{direct, DirectStub, VectorState};
    type Made = OnceLock<std::result::Result<DirectSiteLoop<'static>, sud_codegen::Error>>;
    static SSE: Made = OnceLock::new();
    static FULL: Made = OnceLock::new();
    let cache = code_cache()?;
    let slot = match vectors {
        VectorState::Sse => &SSE,
        VectorState::Full => &FULL,
    };
    slot.get_or_init(|| {
        let access = direct::thread_selector()?;
        let stub = DirectStub::new(cache, access, vectors)?;
        DirectSiteLoop::new(cache, stub, access)
    })
    .as_ref()
    .map_err(|e| BenchError::Codegen(e.clone()))
}
