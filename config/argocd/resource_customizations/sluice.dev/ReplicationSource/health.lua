-- Argo CD health of a Sluice ReplicationSource or ReplicationDestination (both kinds share
-- this script), from its kstatus conditions: Stalled is Degraded, Reconciling is Progressing,
-- Ready is Healthy, and a spec the operator has not observed yet is Progressing. Degraded
-- (syncs fail and are retried) and Synchronizing (a sync runs), the conditions the operator
-- wrote before kstatus ones, count as Stalled and Reconciling.
local hs = {}

local function progressing(message)
  hs.status = "Progressing"
  hs.message = message
  return hs
end

local function explained(condition)
  if condition.message ~= nil and condition.message ~= "" then
    return condition.reason .. ": " .. condition.message
  end
  return condition.reason
end

local generation = obj.metadata.generation
if obj.status == nil then
  return progressing("Waiting for the Sluice operator to observe the object")
end
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  return progressing("Waiting for the Sluice operator to observe generation " .. generation)
end

-- One condition per type; a condition written for an older generation says nothing yet.
local current = {}
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    local stale = generation ~= nil and condition.observedGeneration ~= nil
      and condition.observedGeneration < generation
    if not stale then
      current[condition.type] = condition
    end
  end
end
local function holds(type)
  return current[type] ~= nil and current[type].status == "True"
end

for _, type in ipairs({ "Stalled", "Degraded" }) do
  if holds(type) then
    hs.status = "Degraded"
    hs.message = explained(current[type])
    return hs
  end
end
if obj.spec ~= nil and obj.spec.paused == true then
  hs.status = "Suspended"
  hs.message = "spec.paused is set: no new sync starts"
  return hs
end
for _, type in ipairs({ "Reconciling", "Synchronizing" }) do
  if holds(type) then
    return progressing(explained(current[type]))
  end
end
if holds("Ready") then
  hs.status = "Healthy"
  hs.message = explained(current["Ready"])
  return hs
end
if current["Ready"] ~= nil then
  return progressing(explained(current["Ready"]))
end
return progressing("Waiting for the Sluice operator to set the Ready condition")
