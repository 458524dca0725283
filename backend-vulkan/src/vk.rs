//! FFI boundary to Vulkan (ash, the loader opened at run time). The only
//! module of this crate besides `loader` with `unsafe`: everything else calls
//! the safe functions and types here, which own their Vulkan objects and
//! destroy them on drop.
//!
//! One [`Gpu`] is an instance, a physical device picked by UUID, index or
//! kind, a logical device with `VK_KHR_external_memory_fd`, and one queue
//! (with its command buffer, fence and a host-visible staging buffer) behind
//! a mutex: every submission of this crate is synchronous (recorded,
//! submitted, waited for under the lock).
#![allow(unsafe_code)]

use crate::error::VulkanError;
use ash::vk;
use rustix::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::ffi::CStr;
use std::sync::{Arc, Mutex, MutexGuard};

/// The external memory handle type of this backend.
pub(crate) const HANDLE: vk::ExternalMemoryHandleTypeFlags =
    vk::ExternalMemoryHandleTypeFlags::OPAQUE_FD;

/// The external semaphore handle type of this backend.
const SEM_HANDLE: vk::ExternalSemaphoreHandleTypeFlags =
    vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD;

/// Usage of every shared slot buffer, the same on both sides (a dedicated
/// import must use a buffer made like the exporter's).
const SLOT_USAGE: vk::BufferUsageFlags = vk::BufferUsageFlags::from_raw(
    vk::BufferUsageFlags::TRANSFER_SRC.as_raw()
        | vk::BufferUsageFlags::TRANSFER_DST.as_raw()
        | vk::BufferUsageFlags::STORAGE_BUFFER.as_raw(),
);

/// How long one synchronous submission may take before it is an error.
const FENCE_TIMEOUT_NS: u64 = 10_000_000_000;

/// What a Vulkan physical device is and offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Index in `vkEnumeratePhysicalDevices` order.
    pub index: u32,
    /// `VkPhysicalDeviceProperties::deviceName`.
    pub name: String,
    /// `VkPhysicalDeviceIDProperties::deviceUUID` (on NVIDIA, the CUDA device UUID).
    pub device_uuid: [u8; 16],
    /// `VkPhysicalDeviceIDProperties::driverUUID`: opaque fds pass only
    /// between devices of equal driver and device UUIDs.
    pub driver_uuid: [u8; 16],
    /// `VkPhysicalDeviceType`, e.g. `DISCRETE_GPU`, `CPU` (lavapipe).
    pub device_type: String,
    /// Device API version, `VK_MAKE_API_VERSION` encoded.
    pub api_version: u32,
    /// `VK_KHR_external_memory_fd` (required by this backend).
    pub external_memory_fd: bool,
    /// `VK_KHR_external_semaphore_fd` (lavapipe lacks it).
    pub external_semaphore_fd: bool,
    /// Timeline semaphores (Vulkan 1.2 `timelineSemaphore`) that export and
    /// import as opaque fds: the `VulkanTimeline` sync kind. Known once the
    /// device is opened ([`crate::VulkanDevice::info`]); `false` in
    /// [`devices`].
    pub timeline_fd: bool,
}

/// Which physical device to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSelect {
    /// The most capable usable device: a discrete GPU before an integrated
    /// one, before a virtual one, before a CPU implementation (lavapipe).
    #[default]
    Best,
    /// By `vkEnumeratePhysicalDevices` index.
    Index(u32),
    /// By `deviceUUID` (a subscriber: the publisher's `gpu_uuid`).
    Uuid([u8; 16]),
}

fn rank(t: vk::PhysicalDeviceType) -> u32 {
    match t {
        vk::PhysicalDeviceType::DISCRETE_GPU => 0,
        vk::PhysicalDeviceType::INTEGRATED_GPU => 1,
        vk::PhysicalDeviceType::VIRTUAL_GPU => 2,
        vk::PhysicalDeviceType::CPU => 4,
        _ => 3,
    }
}

/// A host-visible, coherent buffer mapped for the CPU.
struct Staging {
    buffer: vk::Buffer,
    memory: vk::DeviceMemory,
    size: u64,
    ptr: *mut u8,
}

/// The queue and what is recorded on it, used under [`Gpu::exec`]'s lock.
struct Exec {
    queue: vk::Queue,
    pool: vk::CommandPool,
    cmd: vk::CommandBuffer,
    fence: vk::Fence,
    staging: Option<Staging>,
    /// A submission not waited for yet (a `VulkanTimeline` upload): waited
    /// for before the command buffer or the staging buffer is used again.
    in_flight: bool,
}

// SAFETY: `Exec` holds Vulkan handles (plain integers or driver pointers
// that may be used from any thread under external synchronisation) and the
// mapped staging pointer; all of it is only used through `Gpu::exec`'s
// mutex, which is that external synchronisation.
unsafe impl Send for Exec {}

/// An opened Vulkan device. Shared (`Arc`) by the backend, its slots and
/// its imports; destroyed when the last of them goes.
pub(crate) struct Gpu {
    _entry: ash::Entry,
    instance: ash::Instance,
    pdev: vk::PhysicalDevice,
    device: ash::Device,
    mem_fd: ash::khr::external_memory_fd::Device,
    /// `VK_KHR_external_semaphore_fd`, where the device has it.
    sem_fd: Option<ash::khr::external_semaphore_fd::Device>,
    family: u32,
    mem_props: vk::PhysicalDeviceMemoryProperties,
    exec: Mutex<Exec>,
    info: DeviceInfo,
    /// Whether `vkGetPhysicalDeviceExternalBufferProperties` says slot
    /// buffers must be dedicated allocations.
    dedicated_only: bool,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu").field("info", &self.info).finish()
    }
}

fn load() -> Result<(ash::Entry, ash::Instance), VulkanError> {
    // SAFETY: `Entry::load` dlopens the system loader; the returned entry
    // keeps the library loaded while it lives, and it is stored next to the
    // instance (in `Gpu`) or dropped after it (below) in every path.
    let entry = unsafe { ash::Entry::load() }.map_err(|e| VulkanError::NoLoader(e.to_string()))?;
    // SAFETY: a loaded entry; no pointers passed.
    let version = unsafe { entry.try_enumerate_instance_version() }
        .map_err(VulkanError::call("vkEnumerateInstanceVersion"))?
        .unwrap_or(vk::API_VERSION_1_0);
    if version < vk::API_VERSION_1_1 {
        return Err(VulkanError::NoDevice(format!(
            "the Vulkan loader offers {}.{}, 1.1 is needed",
            vk::api_version_major(version),
            vk::api_version_minor(version)
        )));
    }
    let app = vk::ApplicationInfo::default()
        .application_name(c"cuframes")
        .engine_name(c"cuframes-vulkan")
        .api_version(vk::API_VERSION_1_2);
    let info = vk::InstanceCreateInfo::default().application_info(&app);
    // SAFETY: `info` and `app` are valid for the call; no layers or
    // extensions are asked for (1.1 core has what this backend needs).
    let instance = unsafe { entry.create_instance(&info, None) }
        .map_err(VulkanError::call("vkCreateInstance"))?;
    Ok((entry, instance))
}

fn c_str(bytes: &[std::ffi::c_char]) -> String {
    let b: Vec<u8> = bytes
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&b).into_owned()
}

/// Describes `pdev` and finds its first queue family with compute (and so
/// transfer) support.
fn describe(
    instance: &ash::Instance,
    pdev: vk::PhysicalDevice,
    index: u32,
) -> Result<(DeviceInfo, Option<u32>), VulkanError> {
    let mut id = vk::PhysicalDeviceIDProperties::default();
    let mut props = vk::PhysicalDeviceProperties2::default().push_next(&mut id);
    // SAFETY: `pdev` came from this instance; `props` chains one valid
    // output struct, both live for the call. Core in Vulkan 1.1.
    unsafe { instance.get_physical_device_properties2(pdev, &mut props) };
    let p = props.properties;
    // SAFETY: `pdev` came from this instance.
    let exts = unsafe { instance.enumerate_device_extension_properties(pdev) }
        .map_err(VulkanError::call("vkEnumerateDeviceExtensionProperties"))?;
    let has = |name: &CStr| {
        exts.iter()
            .any(|e| e.extension_name_as_c_str().is_ok_and(|n| n == name))
    };
    // SAFETY: `pdev` came from this instance.
    let families = unsafe { instance.get_physical_device_queue_family_properties(pdev) };
    let family = families
        .iter()
        .position(|f| f.queue_flags.contains(vk::QueueFlags::COMPUTE) && f.queue_count > 0)
        .map(|i| i as u32);
    Ok((
        DeviceInfo {
            index,
            name: c_str(&p.device_name),
            device_uuid: id.device_uuid,
            driver_uuid: id.driver_uuid,
            device_type: format!("{:?}", p.device_type),
            api_version: p.api_version,
            external_memory_fd: has(ash::khr::external_memory_fd::NAME),
            external_semaphore_fd: has(ash::khr::external_semaphore_fd::NAME),
            timeline_fd: false,
        },
        family,
    ))
}

/// The Vulkan devices of this machine, in enumeration order.
pub fn devices() -> Result<Vec<DeviceInfo>, VulkanError> {
    let (_entry, instance) = load()?;
    let out = enumerate(&instance).map(|v| v.into_iter().map(|(_, i, _)| i).collect());
    // SAFETY: created by `load`; nothing made from it outlives this call.
    unsafe { instance.destroy_instance(None) };
    out
}

#[allow(clippy::type_complexity)]
fn enumerate(
    instance: &ash::Instance,
) -> Result<Vec<(vk::PhysicalDevice, DeviceInfo, Option<u32>)>, VulkanError> {
    // SAFETY: a live instance.
    let pdevs = unsafe { instance.enumerate_physical_devices() }
        .map_err(VulkanError::call("vkEnumeratePhysicalDevices"))?;
    pdevs
        .into_iter()
        .enumerate()
        .map(|(i, p)| describe(instance, p, i as u32).map(|(info, fam)| (p, info, fam)))
        .collect()
}

impl Gpu {
    /// Opens the device `select` names.
    pub(crate) fn open(select: DeviceSelect) -> Result<Arc<Gpu>, VulkanError> {
        let (entry, instance) = load()?;
        // `entry` (the loaded library) outlives the instance in both paths:
        // a clone goes into the `Gpu`, this one lives to the end of `open`.
        match Self::open_on(entry.clone(), instance.clone(), select) {
            Ok(g) => Ok(g),
            Err(e) => {
                // SAFETY: nothing made from the instance survived the failed
                // open; the loader it was made with is still loaded (`entry`).
                unsafe { instance.destroy_instance(None) };
                Err(e)
            }
        }
    }

    fn open_on(
        entry: ash::Entry,
        instance: ash::Instance,
        select: DeviceSelect,
    ) -> Result<Arc<Gpu>, VulkanError> {
        let all = enumerate(&instance)?;
        let usable = |(_, i, f): &&(vk::PhysicalDevice, DeviceInfo, Option<u32>)| {
            i.external_memory_fd && f.is_some() && i.api_version >= vk::API_VERSION_1_1
        };
        let chosen = match select {
            DeviceSelect::Best => all
                .iter()
                .filter(usable)
                .min_by_key(|(p, i, _)| {
                    // SAFETY: `p` came from this instance.
                    let t = unsafe { instance.get_physical_device_properties(*p) }.device_type;
                    (rank(t), i.index)
                })
                .ok_or_else(|| {
                    VulkanError::NoDevice(format!(
                        "{} device(s), none with VK_KHR_external_memory_fd and a compute queue",
                        all.len()
                    ))
                })?,
            DeviceSelect::Index(n) => all
                .get(n as usize)
                .ok_or_else(|| VulkanError::NoDevice(format!("no device {n} of {}", all.len())))?,
            DeviceSelect::Uuid(u) => all
                .iter()
                .find(|(_, i, _)| i.device_uuid == u)
                .ok_or_else(|| VulkanError::NoSuchUuid(crate::uuid_string(&u)))?,
        };
        let (pdev, info, family) = chosen.clone();
        if info.api_version < vk::API_VERSION_1_1 {
            return Err(VulkanError::NoDevice(format!(
                "{} offers Vulkan {}.{}, 1.1 is needed",
                info.name,
                vk::api_version_major(info.api_version),
                vk::api_version_minor(info.api_version)
            )));
        }
        if !info.external_memory_fd {
            return Err(VulkanError::NoDevice(format!(
                "{} lacks VK_KHR_external_memory_fd",
                info.name
            )));
        }
        let family = family
            .ok_or_else(|| VulkanError::NoDevice(format!("{} has no compute queue", info.name)))?;
        let mut exts = vec![ash::khr::external_memory_fd::NAME.as_ptr()];
        if info.external_semaphore_fd {
            exts.push(ash::khr::external_semaphore_fd::NAME.as_ptr());
        }
        let prio = [1.0f32];
        let queues = [vk::DeviceQueueCreateInfo::default()
            .queue_family_index(family)
            .queue_priorities(&prio)];
        // Timeline semaphores exportable as opaque fds: the feature, the
        // extension, and the external semaphore properties must all agree.
        let timeline_fd =
            info.external_semaphore_fd && info.api_version >= vk::API_VERSION_1_2 && {
                let mut tl = vk::PhysicalDeviceTimelineSemaphoreFeatures::default();
                let mut f2 = vk::PhysicalDeviceFeatures2::default().push_next(&mut tl);
                // SAFETY: `pdev` came from `instance`; one valid chained struct.
                unsafe { instance.get_physical_device_features2(pdev, &mut f2) };
                let mut ty = vk::SemaphoreTypeCreateInfo::default()
                    .semaphore_type(vk::SemaphoreType::TIMELINE);
                let q = vk::PhysicalDeviceExternalSemaphoreInfo::default()
                    .handle_type(SEM_HANDLE)
                    .push_next(&mut ty);
                let mut out = vk::ExternalSemaphoreProperties::default();
                // SAFETY: valid in/out structs; core 1.1.
                unsafe {
                    instance.get_physical_device_external_semaphore_properties(pdev, &q, &mut out)
                };
                tl.timeline_semaphore == vk::TRUE
                    && out.external_semaphore_features.contains(
                        vk::ExternalSemaphoreFeatureFlags::EXPORTABLE
                            | vk::ExternalSemaphoreFeatureFlags::IMPORTABLE,
                    )
            };
        let mut tl_on =
            vk::PhysicalDeviceTimelineSemaphoreFeatures::default().timeline_semaphore(true);
        let mut create = vk::DeviceCreateInfo::default()
            .queue_create_infos(&queues)
            .enabled_extension_names(&exts);
        if timeline_fd {
            create = create.push_next(&mut tl_on);
        }
        let info = DeviceInfo {
            timeline_fd,
            ..info
        };
        // SAFETY: `pdev` came from `instance`; `create` and the arrays it
        // points to (queues, priorities, extension names: 'static C
        // strings) live for the call; the extensions are offered (checked).
        let device = unsafe { instance.create_device(pdev, &create, None) }
            .map_err(VulkanError::call("vkCreateDevice"))?;
        let mem_fd = ash::khr::external_memory_fd::Device::new(&instance, &device);
        let sem_fd = info
            .external_semaphore_fd
            .then(|| ash::khr::external_semaphore_fd::Device::new(&instance, &device));
        // SAFETY: `pdev` came from `instance`.
        let mem_props = unsafe { instance.get_physical_device_memory_properties(pdev) };
        let dedicated_only = {
            let q = vk::PhysicalDeviceExternalBufferInfo::default()
                .usage(SLOT_USAGE)
                .handle_type(HANDLE);
            let mut out = vk::ExternalBufferProperties::default();
            // SAFETY: valid in/out structs; core 1.1.
            unsafe { instance.get_physical_device_external_buffer_properties(pdev, &q, &mut out) };
            let f = out.external_memory_properties.external_memory_features;
            if !f.contains(
                vk::ExternalMemoryFeatureFlags::EXPORTABLE
                    | vk::ExternalMemoryFeatureFlags::IMPORTABLE,
            ) {
                // SAFETY: the device was just made and nothing uses it.
                unsafe { device.destroy_device(None) };
                return Err(VulkanError::NoDevice(format!(
                    "{} cannot export and import opaque-fd buffers",
                    info.name
                )));
            }
            f.contains(vk::ExternalMemoryFeatureFlags::DEDICATED_ONLY)
        };
        let exec = match Exec::new(&device, family) {
            Ok(e) => e,
            Err(e) => {
                // SAFETY: `Exec::new` cleaned up what it made; the device is unused.
                unsafe { device.destroy_device(None) };
                return Err(e);
            }
        };
        Ok(Arc::new(Gpu {
            _entry: entry,
            instance,
            pdev,
            device,
            mem_fd,
            sem_fd,
            family,
            mem_props,
            exec: Mutex::new(exec),
            info,
            dedicated_only,
        }))
    }

    pub(crate) fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// The first memory type in `bits` with all of `want`, else (when
    /// `fallback`) the first in `bits`. Both sides of a share run this on
    /// the same driver and device, so they agree on the index (opaque-fd
    /// imports need the exporter's `memoryTypeIndex`).
    fn memory_type(&self, bits: u32, want: vk::MemoryPropertyFlags, fallback: bool) -> Option<u32> {
        let n = self.mem_props.memory_type_count.min(32) as usize;
        let types = &self.mem_props.memory_types[..n];
        let ok = |i: usize| bits & (1 << i) != 0;
        (0..n)
            .find(|&i| ok(i) && types[i].property_flags.contains(want))
            .or_else(|| fallback.then(|| (0..n).find(|&i| ok(i))).flatten())
            .map(|i| i as u32)
    }

    /// The locked queue (for [`Gpu::upload`], [`Gpu::download`], waits).
    fn exec(&self) -> MutexGuard<'_, Exec> {
        // A panic while the lock was held leaves no half-made Vulkan state
        // that matters here (every use re-records the command buffer).
        self.exec.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes sure the staging buffer holds `len` bytes.
    fn staging<'e>(&self, ex: &'e mut Exec, len: u64) -> Result<&'e mut Staging, VulkanError> {
        if ex.staging.as_ref().is_none_or(|s| s.size < len) {
            if let Some(old) = ex.staging.take() {
                self.destroy_staging(old);
            }
            ex.staging = Some(self.make_staging(len.max(1))?);
        }
        ex.staging
            .as_mut()
            .ok_or(VulkanError::NoMemoryType("staging"))
    }

    fn make_staging(&self, size: u64) -> Result<Staging, VulkanError> {
        let info = vk::BufferCreateInfo::default()
            .size(size)
            .usage(vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST)
            .sharing_mode(vk::SharingMode::EXCLUSIVE);
        // SAFETY: a valid create info on a live device.
        let buffer = unsafe { self.device.create_buffer(&info, None) }
            .map_err(VulkanError::call("vkCreateBuffer"))?;
        let free_buffer = |e| {
            // SAFETY: made above, not bound or used yet.
            unsafe { self.device.destroy_buffer(buffer, None) };
            e
        };
        // SAFETY: `buffer` is live.
        let req = unsafe { self.device.get_buffer_memory_requirements(buffer) };
        let host = vk::MemoryPropertyFlags::HOST_VISIBLE | vk::MemoryPropertyFlags::HOST_COHERENT;
        let ty = self
            .memory_type(
                req.memory_type_bits,
                host | vk::MemoryPropertyFlags::HOST_CACHED,
                false,
            )
            .or_else(|| self.memory_type(req.memory_type_bits, host, false))
            .ok_or(VulkanError::NoMemoryType(
                "staging (host-visible, coherent)",
            ))
            .map_err(free_buffer)?;
        let alloc = vk::MemoryAllocateInfo::default()
            .allocation_size(req.size)
            .memory_type_index(ty);
        // SAFETY: a valid allocate info; the type index is in range.
        let memory = unsafe { self.device.allocate_memory(&alloc, None) }
            .map_err(VulkanError::call("vkAllocateMemory"))
            .map_err(free_buffer)?;
        let staging = Staging {
            buffer,
            memory,
            size,
            ptr: std::ptr::null_mut(),
        };
        // SAFETY: buffer and memory are live, unbound, and the memory is
        // at least `req.size` bytes of a type the buffer allows.
        let bound = unsafe { self.device.bind_buffer_memory(buffer, memory, 0) }
            .map_err(VulkanError::call("vkBindBufferMemory"))
            .and_then(|_| {
                // SAFETY: the memory is host-visible (its type was chosen
                // so) and not mapped yet; WHOLE_SIZE maps all of it.
                unsafe {
                    self.device
                        .map_memory(memory, 0, vk::WHOLE_SIZE, vk::MemoryMapFlags::empty())
                }
                .map_err(VulkanError::call("vkMapMemory"))
            });
        match bound {
            Ok(p) => Ok(Staging {
                ptr: p.cast(),
                ..staging
            }),
            Err(e) => {
                self.destroy_staging(staging);
                Err(e)
            }
        }
    }

    fn destroy_staging(&self, s: Staging) {
        // SAFETY: both objects were made by `make_staging` on this device;
        // no submission uses them (submissions are waited for under the
        // exec lock, which the callers hold or which is gone in drop).
        unsafe {
            self.device.destroy_buffer(s.buffer, None);
            self.device.free_memory(s.memory, None);
        }
    }

    /// Records `copies` (source, destination, regions), submits them and
    /// waits for them; a barrier makes the writes visible to later work
    /// and to the host.
    /// Waits for a submission left in flight (see [`Exec::in_flight`]).
    fn settle(&self, ex: &mut Exec) -> Result<(), VulkanError> {
        if !ex.in_flight {
            return Ok(());
        }
        let d = &self.device;
        // SAFETY: the fence belongs to this device and was submitted with
        // the in-flight work; the exec lock is held by the caller.
        let waited = unsafe { d.wait_for_fences(&[ex.fence], true, FENCE_TIMEOUT_NS) }
            .map_err(VulkanError::call("vkWaitForFences"));
        if waited.is_err() {
            // SAFETY: the queue is externally synchronised by the lock.
            let _ = unsafe { d.queue_wait_idle(ex.queue) };
        }
        // SAFETY: the fence is not pending any more (waited above).
        unsafe { d.reset_fences(&[ex.fence]) }.map_err(VulkanError::call("vkResetFences"))?;
        ex.in_flight = false;
        waited
    }

    /// Records `copies` (source, destination, regions), submits them —
    /// signalling timeline semaphore `signal` to its value when done, if
    /// given — and waits for them unless `signal` is given (then the
    /// submission stays in flight until the next use of the queue); a
    /// barrier makes the writes visible to later work and to the host.
    fn run_copies(
        &self,
        ex: &mut Exec,
        copies: &[(vk::Buffer, vk::Buffer, vk::BufferCopy)],
        signal: Option<(vk::Semaphore, u64)>,
    ) -> Result<(), VulkanError> {
        self.settle(ex)?;
        let d = &self.device;
        let begin = vk::CommandBufferBeginInfo::default()
            .flags(vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT);
        // SAFETY: the command buffer, fence and queue belong to this device
        // and are used only under the exec lock (held by the caller); the
        // previous submission was waited for (`settle`), so the buffer is
        // not pending. Every buffer in `copies` is live: the callers borrow
        // their owners for the whole call (an in-flight upload's
        // destination slot is waited for before it is destroyed: `Drop`
        // waits for the queue), and regions are bounds-checked by them. A
        // signalled semaphore is a live timeline semaphore whose value is
        // below `signal.1` (the caller's rule).
        unsafe {
            d.reset_command_buffer(ex.cmd, vk::CommandBufferResetFlags::empty())
                .map_err(VulkanError::call("vkResetCommandBuffer"))?;
            d.begin_command_buffer(ex.cmd, &begin)
                .map_err(VulkanError::call("vkBeginCommandBuffer"))?;
            for (src, dst, region) in copies {
                d.cmd_copy_buffer(ex.cmd, *src, *dst, std::slice::from_ref(region));
            }
            let barrier = vk::MemoryBarrier::default()
                .src_access_mask(vk::AccessFlags::TRANSFER_WRITE)
                .dst_access_mask(vk::AccessFlags::MEMORY_READ | vk::AccessFlags::HOST_READ);
            d.cmd_pipeline_barrier(
                ex.cmd,
                vk::PipelineStageFlags::TRANSFER,
                vk::PipelineStageFlags::ALL_COMMANDS | vk::PipelineStageFlags::HOST,
                vk::DependencyFlags::empty(),
                std::slice::from_ref(&barrier),
                &[],
                &[],
            );
            d.end_command_buffer(ex.cmd)
                .map_err(VulkanError::call("vkEndCommandBuffer"))?;
            let cmds = [ex.cmd];
            let sems: Vec<vk::Semaphore> = signal.iter().map(|s| s.0).collect();
            let values: Vec<u64> = signal.iter().map(|s| s.1).collect();
            let mut tl =
                vk::TimelineSemaphoreSubmitInfo::default().signal_semaphore_values(&values);
            let mut submit = vk::SubmitInfo::default()
                .command_buffers(&cmds)
                .signal_semaphores(&sems);
            if signal.is_some() {
                submit = submit.push_next(&mut tl);
            }
            d.queue_submit(ex.queue, std::slice::from_ref(&submit), ex.fence)
                .map_err(VulkanError::call("vkQueueSubmit"))?;
            if signal.is_some() {
                ex.in_flight = true;
                return Ok(());
            }
            let waited = d
                .wait_for_fences(&[ex.fence], true, FENCE_TIMEOUT_NS)
                .map_err(VulkanError::call("vkWaitForFences"));
            if waited.is_err() {
                // The fence may still signal: drain the queue before the
                // command buffer or the buffers can be touched again.
                let _ = d.queue_wait_idle(ex.queue);
            }
            d.reset_fences(&[ex.fence])
                .map_err(VulkanError::call("vkResetFences"))?;
            waited
        }
    }

    /// Publisher: lets `fill` write the frame into host staging memory of
    /// `len` bytes (laid out as in the slot), then copies it into `dst` at
    /// offset 0 and waits for the copy (the `HostFence` rule).
    pub(crate) fn upload(
        &self,
        dst: &SharedBuffer,
        len: u64,
        fill: impl FnOnce(&mut [u8]) -> Result<(), VulkanError>,
        signal: Option<(&Semaphore, u64)>,
    ) -> Result<(), VulkanError> {
        if len > dst.size {
            return Err(VulkanError::Layout("frame larger than its slot"));
        }
        let mut ex = self.exec();
        // The staging buffer may still be read by an upload in flight.
        self.settle(&mut ex)?;
        let s = self.staging(&mut ex, len)?;
        let (sbuf, sptr) = (s.buffer, s.ptr);
        {
            // SAFETY: `sptr` maps at least `len` bytes (`staging` made it
            // so) of host-coherent memory no submission is using (the
            // previous one was waited for, the next is made below); the
            // exec lock makes this the only reference to it.
            let bytes = unsafe { std::slice::from_raw_parts_mut(sptr, len as usize) };
            fill(bytes)?;
        }
        if len == 0 {
            return Err(VulkanError::Layout("empty frame"));
        }
        let region = vk::BufferCopy {
            src_offset: 0,
            dst_offset: 0,
            size: len,
        };
        let signal = signal.map(|(sem, v)| (sem.sem, v));
        self.run_copies(&mut ex, &[(sbuf, dst.buffer, region)], signal)
    }

    /// Subscriber: copies `len` bytes at offset 0 of `src` to host staging
    /// memory, waits, and hands them to `read`.
    pub(crate) fn download<R>(
        &self,
        src: &SharedBuffer,
        len: u64,
        read: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, VulkanError> {
        if len > src.size {
            return Err(VulkanError::Layout("frame larger than its slot"));
        }
        let mut ex = self.exec();
        self.settle(&mut ex)?;
        let s = self.staging(&mut ex, len)?;
        let (sbuf, sptr) = (s.buffer, s.ptr);
        if len > 0 {
            let region = vk::BufferCopy {
                src_offset: 0,
                dst_offset: 0,
                size: len,
            };
            self.run_copies(&mut ex, &[(src.buffer, sbuf, region)], None)?;
        }
        // SAFETY: as in `upload`: `len` mapped coherent bytes, the copy
        // into them completed (fence waited), the lock held.
        let bytes = unsafe { std::slice::from_raw_parts(sptr, len as usize) };
        Ok(read(bytes))
    }

    /// `vkQueueWaitIdle`: work submitted on this backend's queue is done.
    pub(crate) fn wait_idle(&self) -> Result<(), VulkanError> {
        let mut ex = self.exec();
        self.settle(&mut ex)?;
        // SAFETY: the queue is externally synchronised by the exec lock.
        unsafe { self.device.queue_wait_idle(ex.queue) }
            .map_err(VulkanError::call("vkQueueWaitIdle"))
    }

    /// Runs `f` with the device, the queue family and the queue (locked:
    /// nothing else of this crate submits meanwhile), for an application's
    /// own work on shared frames.
    pub(crate) fn with_queue<R>(&self, f: impl FnOnce(QueueAccess<'_>) -> R) -> R {
        let ex = self.exec();
        f(QueueAccess {
            instance: &self.instance,
            physical_device: self.pdev,
            device: &self.device,
            queue_family: self.family,
            queue: ex.queue,
        })
    }

    fn create_slot_buffer(
        &self,
        size: u64,
    ) -> Result<(vk::Buffer, vk::MemoryRequirements), VulkanError> {
        let mut ext = vk::ExternalMemoryBufferCreateInfo::default().handle_types(HANDLE);
        let info = vk::BufferCreateInfo::default()
            .size(size)
            .usage(SLOT_USAGE)
            .sharing_mode(vk::SharingMode::EXCLUSIVE)
            .push_next(&mut ext);
        // SAFETY: a valid create info chaining one valid struct, both live
        // for the call.
        let buffer = unsafe { self.device.create_buffer(&info, None) }
            .map_err(VulkanError::call("vkCreateBuffer"))?;
        // SAFETY: `buffer` is live.
        let req = unsafe { self.device.get_buffer_memory_requirements(buffer) };
        Ok((buffer, req))
    }
}

impl Drop for Gpu {
    fn drop(&mut self) {
        let ex = self.exec.get_mut().unwrap_or_else(|p| p.into_inner());
        let staging = ex.staging.take();
        let (pool, fence) = (ex.pool, ex.fence);
        // SAFETY: the last owner is going: every slot, import and staging
        // buffer made from this device is gone (they hold the `Arc`) except
        // the staging buffer destroyed here; waiting for the device first
        // means nothing is pending. Then the objects are destroyed
        // children first, the instance last.
        unsafe {
            let _ = self.device.device_wait_idle();
            if let Some(s) = staging {
                self.device.destroy_buffer(s.buffer, None);
                self.device.free_memory(s.memory, None);
            }
            self.device.destroy_fence(fence, None);
            self.device.destroy_command_pool(pool, None);
            self.device.destroy_device(None);
            self.instance.destroy_instance(None);
        }
    }
}

impl Exec {
    fn new(device: &ash::Device, family: u32) -> Result<Self, VulkanError> {
        // SAFETY: the family was used to create the device with one queue.
        let queue = unsafe { device.get_device_queue(family, 0) };
        let pool_info = vk::CommandPoolCreateInfo::default()
            .queue_family_index(family)
            .flags(vk::CommandPoolCreateFlags::RESET_COMMAND_BUFFER);
        // SAFETY: valid create info on a live device.
        let pool = unsafe { device.create_command_pool(&pool_info, None) }
            .map_err(VulkanError::call("vkCreateCommandPool"))?;
        let alloc = vk::CommandBufferAllocateInfo::default()
            .command_pool(pool)
            .level(vk::CommandBufferLevel::PRIMARY)
            .command_buffer_count(1);
        // SAFETY: valid allocate info naming the pool just made.
        let cmd = match unsafe { device.allocate_command_buffers(&alloc) } {
            Ok(v) if !v.is_empty() => v[0],
            r => {
                // SAFETY: the pool is unused.
                unsafe { device.destroy_command_pool(pool, None) };
                return Err(VulkanError::Call {
                    call: "vkAllocateCommandBuffers",
                    result: r.err().unwrap_or(vk::Result::ERROR_UNKNOWN),
                });
            }
        };
        // SAFETY: valid create info on a live device.
        let fence = match unsafe { device.create_fence(&vk::FenceCreateInfo::default(), None) } {
            Ok(f) => f,
            Err(e) => {
                // SAFETY: the pool (and its buffer) are unused.
                unsafe { device.destroy_command_pool(pool, None) };
                return Err(VulkanError::Call {
                    call: "vkCreateFence",
                    result: e,
                });
            }
        };
        Ok(Exec {
            queue,
            pool,
            cmd,
            fence,
            staging: None,
            in_flight: false,
        })
    }
}

/// The device and queue, handed to [`crate::VulkanDevice::with_queue`].
#[derive(Clone, Copy)]
pub struct QueueAccess<'a> {
    /// The instance (ash).
    pub instance: &'a ash::Instance,
    /// The physical device.
    pub physical_device: vk::PhysicalDevice,
    /// The logical device (ash): create pipelines, buffers, command pools on it.
    pub device: &'a ash::Device,
    /// Family of [`QueueAccess::queue`].
    pub queue_family: u32,
    /// The queue, externally synchronised for the closure's duration.
    pub queue: vk::Queue,
}

/// A buffer over one exportable or imported `VkDeviceMemory`, bound at
/// offset 0; destroyed (and the memory freed) on drop.
pub(crate) struct SharedBuffer {
    gpu: Arc<Gpu>,
    buffer: vk::Buffer,
    memory: vk::DeviceMemory,
    size: u64,
    dedicated: bool,
}

impl std::fmt::Debug for SharedBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBuffer")
            .field("buffer", &self.buffer)
            .field("size", &self.size)
            .field("dedicated", &self.dedicated)
            .finish()
    }
}

/// How memory is imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ImportAs {
    /// A dedicated allocation of a buffer made like the exporter's (Vulkan
    /// publishers).
    Dedicated,
    /// A plain allocation (CUDA VMM allocations).
    Plain,
}

impl SharedBuffer {
    /// A buffer of `size` bytes in a dedicated, device-local allocation of
    /// exactly `size` bytes, exportable as an opaque fd.
    pub(crate) fn exportable(gpu: &Arc<Gpu>, size: u64) -> Result<Self, VulkanError> {
        let (buffer, req) = gpu.create_slot_buffer(size)?;
        let memory = (|| {
            if req.size != size {
                return Err(VulkanError::AllocationSize {
                    size,
                    needs: req.size,
                });
            }
            let ty = gpu
                .memory_type(
                    req.memory_type_bits,
                    vk::MemoryPropertyFlags::DEVICE_LOCAL,
                    true,
                )
                .ok_or(VulkanError::NoMemoryType("slots"))?;
            let mut export = vk::ExportMemoryAllocateInfo::default().handle_types(HANDLE);
            let mut dedicated = vk::MemoryDedicatedAllocateInfo::default().buffer(buffer);
            let alloc = vk::MemoryAllocateInfo::default()
                .allocation_size(size)
                .memory_type_index(ty)
                .push_next(&mut export)
                .push_next(&mut dedicated);
            // SAFETY: a valid allocate info whose chain lives for the call;
            // `size` equals the buffer's requirement (dedicated-allocation
            // rule, checked above); the type is one the buffer allows.
            unsafe { gpu.device.allocate_memory(&alloc, None) }
                .map_err(VulkanError::call("vkAllocateMemory"))
        })();
        Self::bind(gpu, buffer, memory, size, true)
    }

    /// Imports `fd` (an opaque fd of an allocation of exactly `size`
    /// bytes) as the memory of a new buffer of `size` bytes. The fd is
    /// consumed: Vulkan owns it on success; on failure it is leaked (some
    /// drivers close it then, against the specification).
    ///
    /// What Vulkan cannot check is the caller's to check first: the
    /// specification makes an `allocationSize` or `memoryTypeIndex` other
    /// than the exporter's undefined behaviour, so `size` must be the
    /// protocol's size for the slot and the type index follows the same
    /// rule as the exporter's.
    pub(crate) fn import(
        gpu: &Arc<Gpu>,
        fd: OwnedFd,
        size: u64,
        how: ImportAs,
    ) -> Result<Self, VulkanError> {
        let (buffer, req) = gpu.create_slot_buffer(size)?;
        let memory = (|| {
            if req.size > size || (how == ImportAs::Dedicated && req.size != size) {
                return Err(VulkanError::AllocationSize {
                    size,
                    needs: req.size,
                });
            }
            let ty = gpu
                .memory_type(
                    req.memory_type_bits,
                    vk::MemoryPropertyFlags::DEVICE_LOCAL,
                    true,
                )
                .ok_or(VulkanError::NoMemoryType("slots"))?;
            // Vulkan takes the fd on success and, by the specification,
            // leaves it to us on failure; lavapipe closes it on failure
            // anyway. So a failed import leaks it rather than risk closing
            // a number another thread may have reopened by then.
            let raw = fd.into_raw_fd();
            let mut import = vk::ImportMemoryFdInfoKHR::default()
                .handle_type(HANDLE)
                .fd(raw);
            let mut dedicated = vk::MemoryDedicatedAllocateInfo::default().buffer(buffer);
            let mut alloc = vk::MemoryAllocateInfo::default()
                .allocation_size(size)
                .memory_type_index(ty)
                .push_next(&mut import);
            if how == ImportAs::Dedicated || gpu.dedicated_only {
                alloc = alloc.push_next(&mut dedicated);
            }
            // SAFETY: a valid allocate info whose chain lives for the call.
            // `raw` is an fd we own (just released from its OwnedFd); the
            // size and type index are the exporter's by the protocol's rule
            // and the caller's checks (see the doc comment).
            unsafe { gpu.device.allocate_memory(&alloc, None) }
                .map_err(VulkanError::call("vkAllocateMemory (import)"))
        })();
        Self::bind(gpu, buffer, memory, size, how == ImportAs::Dedicated)
    }

    fn bind(
        gpu: &Arc<Gpu>,
        buffer: vk::Buffer,
        memory: Result<vk::DeviceMemory, VulkanError>,
        size: u64,
        dedicated: bool,
    ) -> Result<Self, VulkanError> {
        let memory = match memory {
            Ok(m) => m,
            Err(e) => {
                // SAFETY: made by `create_slot_buffer`, never bound or used.
                unsafe { gpu.device.destroy_buffer(buffer, None) };
                return Err(e);
            }
        };
        let me = SharedBuffer {
            gpu: Arc::clone(gpu),
            buffer,
            memory,
            size,
            dedicated,
        };
        // SAFETY: both live and unbound; the memory holds `size` bytes, at
        // least the buffer's requirement, of a type the buffer allows.
        unsafe { gpu.device.bind_buffer_memory(buffer, memory, 0) }
            .map_err(VulkanError::call("vkBindBufferMemory"))?;
        Ok(me)
    }

    /// `vkGetMemoryFdKHR`: a new opaque fd for the memory.
    pub(crate) fn export_fd(&self) -> Result<OwnedFd, VulkanError> {
        let info = vk::MemoryGetFdInfoKHR::default()
            .memory(self.memory)
            .handle_type(HANDLE);
        // SAFETY: the memory is live and was allocated exportable as this
        // handle type (`exportable`).
        let fd = unsafe { self.gpu.mem_fd.get_memory_fd(&info) }
            .map_err(VulkanError::call("vkGetMemoryFdKHR"))?;
        if fd < 0 {
            return Err(VulkanError::Call {
                call: "vkGetMemoryFdKHR",
                result: vk::Result::ERROR_INVALID_EXTERNAL_HANDLE,
            });
        }
        // SAFETY: the driver returned a new fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    pub(crate) fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    pub(crate) fn raw(&self) -> vk::Buffer {
        self.buffer
    }

    pub(crate) fn raw_memory(&self) -> vk::DeviceMemory {
        self.memory
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    pub(crate) fn is_dedicated(&self) -> bool {
        self.dedicated
    }
}

impl Drop for SharedBuffer {
    fn drop(&mut self) {
        // Work of this crate on the buffer was waited for when submitted;
        // an application's own work is its to finish before it drops the
        // frame (`before_release` waits for the queue).
        let _ = self.gpu.wait_idle();
        // SAFETY: made on this device by `exportable` / `import`; no
        // pending work uses them (waited above).
        unsafe {
            self.gpu.device.destroy_buffer(self.buffer, None);
            self.gpu.device.free_memory(self.memory, None);
        }
    }
}

/// A timeline semaphore exported or imported as an opaque fd
/// (`VulkanTimeline` sync); destroyed on drop.
pub(crate) struct Semaphore {
    gpu: Arc<Gpu>,
    sem: vk::Semaphore,
}

impl std::fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Semaphore").field("sem", &self.sem).finish()
    }
}

impl Semaphore {
    fn create(gpu: &Arc<Gpu>, export: bool) -> Result<Self, VulkanError> {
        if !gpu.info.timeline_fd {
            return Err(VulkanError::NoDevice(format!(
                "{} has no timeline semaphores exportable as fds (VK_KHR_external_semaphore_fd)",
                gpu.info.name
            )));
        }
        let mut ty = vk::SemaphoreTypeCreateInfo::default()
            .semaphore_type(vk::SemaphoreType::TIMELINE)
            .initial_value(0);
        let mut ex = vk::ExportSemaphoreCreateInfo::default().handle_types(SEM_HANDLE);
        let mut info = vk::SemaphoreCreateInfo::default().push_next(&mut ty);
        if export {
            info = info.push_next(&mut ex);
        }
        // SAFETY: a valid create info whose chain lives for the call; the
        // timeline feature is enabled (`timeline_fd`).
        let sem = unsafe { gpu.device.create_semaphore(&info, None) }
            .map_err(VulkanError::call("vkCreateSemaphore"))?;
        Ok(Semaphore {
            gpu: Arc::clone(gpu),
            sem,
        })
    }

    /// A timeline semaphore (initial value 0) exportable as an opaque fd.
    pub(crate) fn exportable(gpu: &Arc<Gpu>) -> Result<Self, VulkanError> {
        Self::create(gpu, true)
    }

    /// Imports `fd` (a peer's timeline semaphore) into a new semaphore.
    /// Vulkan owns the fd on success; on failure it is leaked (as
    /// [`SharedBuffer::import`] does).
    pub(crate) fn import(gpu: &Arc<Gpu>, fd: OwnedFd) -> Result<Self, VulkanError> {
        let me = Self::create(gpu, false)?;
        let ext = gpu.sem_fd.as_ref().ok_or(VulkanError::NoDevice(
            "no VK_KHR_external_semaphore_fd".into(),
        ))?;
        let info = vk::ImportSemaphoreFdInfoKHR::default()
            .semaphore(me.sem)
            .handle_type(SEM_HANDLE)
            .fd(fd.into_raw_fd());
        // SAFETY: a live semaphore of the timeline type, not in use; the fd
        // is ours to give (released from its OwnedFd); the driver checks
        // that it is an opaque semaphore fd of a compatible semaphore.
        unsafe { ext.import_semaphore_fd(&info) }
            .map_err(VulkanError::call("vkImportSemaphoreFdKHR"))?;
        Ok(me)
    }

    /// `vkGetSemaphoreFdKHR`: a new opaque fd for the semaphore.
    pub(crate) fn export_fd(&self) -> Result<OwnedFd, VulkanError> {
        let ext = self.gpu.sem_fd.as_ref().ok_or(VulkanError::NoDevice(
            "no VK_KHR_external_semaphore_fd".into(),
        ))?;
        let info = vk::SemaphoreGetFdInfoKHR::default()
            .semaphore(self.sem)
            .handle_type(SEM_HANDLE);
        // SAFETY: the semaphore is live and was created exportable as
        // this handle type (`exportable`).
        let fd = unsafe { ext.get_semaphore_fd(&info) }
            .map_err(VulkanError::call("vkGetSemaphoreFdKHR"))?;
        if fd < 0 {
            return Err(VulkanError::Call {
                call: "vkGetSemaphoreFdKHR",
                result: vk::Result::ERROR_INVALID_EXTERNAL_HANDLE,
            });
        }
        // SAFETY: the driver returned a new fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// `vkGetSemaphoreCounterValue`.
    pub(crate) fn value(&self) -> Result<u64, VulkanError> {
        // SAFETY: a live timeline semaphore.
        unsafe { self.gpu.device.get_semaphore_counter_value(self.sem) }
            .map_err(VulkanError::call("vkGetSemaphoreCounterValue"))
    }

    /// `vkWaitSemaphores` for `value`, at most `timeout_ns`: whether it
    /// was reached.
    pub(crate) fn wait(&self, value: u64, timeout_ns: u64) -> Result<bool, VulkanError> {
        let sems = [self.sem];
        let values = [value];
        let info = vk::SemaphoreWaitInfo::default()
            .semaphores(&sems)
            .values(&values);
        // SAFETY: a live timeline semaphore; the arrays live for the call.
        match unsafe { self.gpu.device.wait_semaphores(&info, timeout_ns) } {
            Ok(()) => Ok(true),
            Err(vk::Result::TIMEOUT) => Ok(false),
            Err(e) => Err(VulkanError::Call {
                call: "vkWaitSemaphores",
                result: e,
            }),
        }
    }

    pub(crate) fn raw(&self) -> vk::Semaphore {
        self.sem
    }
}

impl Drop for Semaphore {
    fn drop(&mut self) {
        // Pending signals of this crate are waited for first.
        let _ = self.gpu.wait_idle();
        // SAFETY: made on this device; no pending submission uses it
        // (waited above).
        unsafe { self.gpu.device.destroy_semaphore(self.sem, None) };
    }
}
