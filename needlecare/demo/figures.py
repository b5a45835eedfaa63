"""The figures the synthetic cohort follows (shared/domain.md; a guide, not a model fitted to data): the
clinic's time zone and practitioners, the injury mix and responder shares, the muscles and regions needled,
baseline measures, PSFS activities, response rates per step, red-flag rates and the free text patients write."""

CLINIC_TZ = "America/New_York"
PATIENT_ZONES: tuple[tuple[str, float], ...] = (
    (CLINIC_TZ, 0.82),
    ("America/Chicago", 0.06),
    ("America/Los_Angeles", 0.05),
    ("Europe/London", 0.04),
    ("America/Toronto", 0.03),
)
PRACTITIONERS = 4

# Runners' clinic mix (relative weights) and the share of responders per injury (domain.md §1.1; [E]).
INJURY_WEIGHTS: dict[str, float] = {
    "pfps": 16,
    "achilles_tendinopathy": 14,
    "plantar_fasciitis": 13,
    "itbs": 12,
    "mtss": 11,
    "hamstring_strain": 9,
    "calf_strain": 8,
    "gluteal_tendinopathy": 7,
    "piriformis_syndrome": 5,
    "bone_stress_injury": 5,
}
RESPONDER_SHARE: dict[str, float] = {
    "pfps": 0.60,
    "achilles_tendinopathy": 0.60,
    "plantar_fasciitis": 0.62,
    "itbs": 0.65,
    "mtss": 0.58,
    "hamstring_strain": 0.70,
    "calf_strain": 0.70,
    "gluteal_tendinopathy": 0.52,
    "piriformis_syndrome": 0.55,
    "bone_stress_injury": 0.50,  # needling does not treat the fracture (domain.md §1.2)
}
WORSEN_SHARE = 0.10

# Muscles the seeds name per injury (domain.md §1.1) and the catalogue region each lies in.
MUSCLES: dict[str, tuple[str, ...]] = {
    "achilles_tendinopathy": ("gastrocnemius", "soleus"),
    "plantar_fasciitis": ("flexor digitorum brevis", "gastrocnemius", "soleus"),
    "mtss": ("tibialis anterior", "tibialis posterior", "soleus"),
    "pfps": ("vastus medialis", "vastus lateralis", "rectus femoris"),
    "itbs": ("tensor fasciae latae", "gluteus maximus", "vastus lateralis"),
    "hamstring_strain": ("biceps femoris", "semimembranosus", "semitendinosus"),
    "calf_strain": ("gastrocnemius", "soleus", "tibialis posterior"),
    "piriformis_syndrome": ("piriformis", "gluteus maximus", "gluteus medius"),
    "gluteal_tendinopathy": ("gluteus medius", "gluteus minimus", "piriformis"),
    "bone_stress_injury": ("soleus", "gastrocnemius"),  # surrounding muscle tightness only
}
REGION_OF: dict[str, str] = {
    "gastrocnemius": "calf",
    "soleus": "calf",
    "tibialis posterior": "calf",
    "flexor digitorum brevis": "foot",
    "tibialis anterior": "shin",
    "vastus medialis": "thigh_front",
    "vastus lateralis": "thigh_front",
    "rectus femoris": "thigh_front",
    "tensor fasciae latae": "hip",
    "gluteus maximus": "gluteal",
    "gluteus medius": "gluteal",
    "gluteus minimus": "gluteal",
    "piriformis": "gluteal",
    "biceps femoris": "thigh_back",
    "semimembranosus": "thigh_back",
    "semitendinosus": "thigh_back",
    "quadratus lumborum": "lower_back",
    "upper trapezius": "shoulder_girdle",
    "thoracic erector spinae": "thoracic_back",
}
TRUNK_EXTRA: tuple[str, ...] = ("upper trapezius", "thoracic erector spinae")
TRUNK_SHARE = 0.04
LOWER_BACK_SHARE = 0.15  # piriformis / gluteal / hamstring patients only

# The ROM measure sent at ingest, per injury: the protocol's self-test measure where there is one, so the
# episode baseline and the self-test answers are comparable; else the catalogue's first measure.
BASELINE_MEASURE: dict[str, str] = {
    "achilles_tendinopathy": "wblt_cm",
    "plantar_fasciitis": "wblt_cm",
    "mtss": "wblt_cm",
    "calf_strain": "wblt_cm",
    "pfps": "task_pain_nprs",
    "itbs": "ober_deg",
    "hamstring_strain": "slr_deg",
    "piriformis_syndrome": "hip_ir_deg",
    "gluteal_tendinopathy": "stance_pain_onset_s",
    "bone_stress_injury": "walk_pain_nprs",
}

PSFS_ACTIVITIES: dict[str, tuple[str, ...]] = {
    "achilles_tendinopathy": ("Running 5 km", "Hill running", "Walking up stairs", "Jumping"),
    "plantar_fasciitis": ("First steps in the morning", "Running 5 km", "Standing at work", "Walking barefoot"),
    "mtss": ("Running 5 km", "Running on pavement", "Hopping", "Walking fast"),
    "pfps": ("Running 5 km", "Going down stairs", "Squatting", "Sitting through a film"),
    "itbs": ("Running 8 km", "Running downhill", "Cycling", "Going down stairs"),
    "hamstring_strain": ("Sprinting", "Running 5 km", "Bending to tie shoes", "Long strides"),
    "calf_strain": ("Running 5 km", "Hill running", "Rising onto toes", "Jogging"),
    "piriformis_syndrome": ("Sitting for an hour", "Running 5 km", "Driving", "Climbing stairs"),
    "gluteal_tendinopathy": ("Lying on my side", "Walking up stairs", "Running 5 km", "Standing on one leg"),
    "bone_stress_injury": ("Walking 30 minutes", "Walking up stairs", "Jogging", "Standing all day"),
}

# Planned response rates per step (domain.md §4.3: ~60-80 % early, ~50-55 % at 12 weeks with automation).
RESPONSE_RATE: dict[str, float] = {
    "check_24h": 0.82,
    "check_72h": 0.77,
    "check_7d": 0.70,
    "outcome_4wk": 0.65,
    "outcome_6wk": 0.61,
    "outcome_12wk": 0.57,
}
DEFAULT_RESPONSE_RATE = 0.6

# Red flags at a safety check (domain.md §3.3); weights within the list. Trunk and BSI flags are separate.
REDFLAG_RATE = 0.018
REDFLAG_WEIGHTS: dict[str, float] = {
    "spreading_redness": 3,
    "site_hot_swollen": 2,
    "fainted_after_leaving": 2,
    "new_tingling": 2,
    "new_numbness": 1,
    "fever": 1,
    "calf_swollen_warm_one_leg": 1,
    "palpitations": 0.5,
    "uncontrolled_bleeding": 0.5,
}
TRUNK_BREATHING_RATE = 0.03  # per safety check of a patient whose trunk was needled
BSI_FLAG_RATE = 0.05  # per safety check of a bone-stress patient
BSI_FLAGS = ("pain_walking", "night_pain", "new_focal_bone_pain")
LARGE_BRUISE_RATE, SPREADING_BRUISE_RATE, SMALL_BRUISE_RATE = 0.008, 0.002, 0.12
FREE_TEXT_RATE = 0.08

BENIGN_TEXT: tuple[str, ...] = (
    "A bit stiff the next morning, fine after walking around.",
    "Felt looser on my easy run today.",
    "Still tight after long runs but getting better.",
    "Sore where the needles went in, settled by the evening.",
    "Back to my usual parkrun this weekend.",
    "No change really.",
    "Stairs are easier than last week.",
    "Had a small bruise, gone now.",
)
REDFLAG_TEXT: dict[str, str] = {
    "spreading_redness": "The red patch around one of the needle spots is getting bigger.",
    "site_hot_swollen": "One spot is hot and puffy.",
    "fainted_after_leaving": "Felt faint on the bus home and had to sit down.",
    "new_tingling": "Pins and needles in my foot since yesterday.",
    "new_numbness": "Part of my foot feels numb.",
    "fever": "Running a temperature since last night.",
    "breathless": "Short of breath since the session, worse when I lie down.",
    "pain_on_breathing": "Sharp pain in my upper back when I breathe in.",
    "large": "The bruise is bigger than my hand.",
    "pain_walking": "It hurts to walk now, in one spot on the bone.",
}

# Text messages (issue 16; domain.md §4.3 gives no consent share: these are a guide, not data). A patient gives a
# mobile number and agrees to SMS, or not; numbers are fictional: 555-0100 to 555-0199 in real area codes of the
# clinic's region (reserved for fiction in the North American plan), valid E.164 as the phonenumbers library reads
# them, unique per patient up to 100 x the number of area codes.
PHONE_SHARE = 0.85  # patients with a mobile number on file
SMS_CONSENT_SHARE = 0.70  # of those, the share who agree to text messages
FICTIONAL_AREA_CODES: tuple[int, ...] = (
    212, 315, 332, 347, 516, 518, 585, 607, 631, 646, 680, 716, 718, 838, 845, 914, 917, 929, 934, 201, 973, 862, 203,
    475, 860,
)  # fmt: skip
SMS_REPLY_SHARE = 0.6
"""Of the answers that come after an SMS reminder to a check a text reply can answer (no red flag to report),
the share sent as a reply of numbers rather than through the link."""
