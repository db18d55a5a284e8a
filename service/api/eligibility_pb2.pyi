from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HouseholdStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HOUSEHOLD_STATUS_UNSPECIFIED: _ClassVar[HouseholdStatus]
    HOUSEHOLD_STATUS_ORDINARY: _ClassVar[HouseholdStatus]
    HOUSEHOLD_STATUS_DIBAO_EDGE: _ClassVar[HouseholdStatus]
    HOUSEHOLD_STATUS_DIBAO: _ClassVar[HouseholdStatus]
    HOUSEHOLD_STATUS_DESTITUTE: _ClassVar[HouseholdStatus]

class DisabilityCategory(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DISABILITY_CATEGORY_UNSPECIFIED: _ClassVar[DisabilityCategory]
    DISABILITY_CATEGORY_VISUAL: _ClassVar[DisabilityCategory]
    DISABILITY_CATEGORY_HEARING: _ClassVar[DisabilityCategory]
    DISABILITY_CATEGORY_SPEECH: _ClassVar[DisabilityCategory]
    DISABILITY_CATEGORY_PHYSICAL: _ClassVar[DisabilityCategory]
    DISABILITY_CATEGORY_INTELLECTUAL: _ClassVar[DisabilityCategory]
    DISABILITY_CATEGORY_MENTAL: _ClassVar[DisabilityCategory]
    DISABILITY_CATEGORY_MULTIPLE: _ClassVar[DisabilityCategory]

class CapacityLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CAPACITY_LEVEL_UNSPECIFIED: _ClassVar[CapacityLevel]
    CAPACITY_LEVEL_INTACT: _ClassVar[CapacityLevel]
    CAPACITY_LEVEL_MILD_LOSS: _ClassVar[CapacityLevel]
    CAPACITY_LEVEL_MODERATE_LOSS: _ClassVar[CapacityLevel]
    CAPACITY_LEVEL_SEVERE_LOSS: _ClassVar[CapacityLevel]

class SelfCare(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SELF_CARE_UNSPECIFIED: _ClassVar[SelfCare]
    SELF_CARE_FULLY_DEPENDENT: _ClassVar[SelfCare]
    SELF_CARE_MOSTLY_DEPENDENT: _ClassVar[SelfCare]
    SELF_CARE_PARTLY_DEPENDENT: _ClassVar[SelfCare]

class ChildStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHILD_STATUS_UNSPECIFIED: _ClassVar[ChildStatus]
    CHILD_STATUS_NONE: _ClassVar[ChildStatus]
    CHILD_STATUS_INSTITUTIONAL_ORPHAN: _ClassVar[ChildStatus]
    CHILD_STATUS_COMMUNITY_ORPHAN: _ClassVar[ChildStatus]
    CHILD_STATUS_DE_FACTO_UNSUPPORTED: _ClassVar[ChildStatus]

class EducationLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EDUCATION_LEVEL_UNSPECIFIED: _ClassVar[EducationLevel]
    EDUCATION_LEVEL_PRIMARY: _ClassVar[EducationLevel]
    EDUCATION_LEVEL_JUNIOR_SECONDARY: _ClassVar[EducationLevel]
    EDUCATION_LEVEL_SENIOR_SECONDARY: _ClassVar[EducationLevel]
    EDUCATION_LEVEL_JUNIOR_COLLEGE: _ClassVar[EducationLevel]
    EDUCATION_LEVEL_UNDERGRADUATE: _ClassVar[EducationLevel]
    EDUCATION_LEVEL_POSTGRADUATE: _ClassVar[EducationLevel]

class Benefit(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BENEFIT_UNSPECIFIED: _ClassVar[Benefit]
    BENEFIT_WORK_INJURY_NURSING_ALLOWANCE: _ClassVar[Benefit]

class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_UNSPECIFIED: _ClassVar[Outcome]
    OUTCOME_ELIGIBLE: _ClassVar[Outcome]
    OUTCOME_INELIGIBLE: _ClassVar[Outcome]
    OUTCOME_UNDETERMINED: _ClassVar[Outcome]

class RuleResult(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RULE_RESULT_UNSPECIFIED: _ClassVar[RuleResult]
    RULE_RESULT_PASSED: _ClassVar[RuleResult]
    RULE_RESULT_FAILED: _ClassVar[RuleResult]
    RULE_RESULT_UNKNOWN: _ClassVar[RuleResult]
HOUSEHOLD_STATUS_UNSPECIFIED: HouseholdStatus
HOUSEHOLD_STATUS_ORDINARY: HouseholdStatus
HOUSEHOLD_STATUS_DIBAO_EDGE: HouseholdStatus
HOUSEHOLD_STATUS_DIBAO: HouseholdStatus
HOUSEHOLD_STATUS_DESTITUTE: HouseholdStatus
DISABILITY_CATEGORY_UNSPECIFIED: DisabilityCategory
DISABILITY_CATEGORY_VISUAL: DisabilityCategory
DISABILITY_CATEGORY_HEARING: DisabilityCategory
DISABILITY_CATEGORY_SPEECH: DisabilityCategory
DISABILITY_CATEGORY_PHYSICAL: DisabilityCategory
DISABILITY_CATEGORY_INTELLECTUAL: DisabilityCategory
DISABILITY_CATEGORY_MENTAL: DisabilityCategory
DISABILITY_CATEGORY_MULTIPLE: DisabilityCategory
CAPACITY_LEVEL_UNSPECIFIED: CapacityLevel
CAPACITY_LEVEL_INTACT: CapacityLevel
CAPACITY_LEVEL_MILD_LOSS: CapacityLevel
CAPACITY_LEVEL_MODERATE_LOSS: CapacityLevel
CAPACITY_LEVEL_SEVERE_LOSS: CapacityLevel
SELF_CARE_UNSPECIFIED: SelfCare
SELF_CARE_FULLY_DEPENDENT: SelfCare
SELF_CARE_MOSTLY_DEPENDENT: SelfCare
SELF_CARE_PARTLY_DEPENDENT: SelfCare
CHILD_STATUS_UNSPECIFIED: ChildStatus
CHILD_STATUS_NONE: ChildStatus
CHILD_STATUS_INSTITUTIONAL_ORPHAN: ChildStatus
CHILD_STATUS_COMMUNITY_ORPHAN: ChildStatus
CHILD_STATUS_DE_FACTO_UNSUPPORTED: ChildStatus
EDUCATION_LEVEL_UNSPECIFIED: EducationLevel
EDUCATION_LEVEL_PRIMARY: EducationLevel
EDUCATION_LEVEL_JUNIOR_SECONDARY: EducationLevel
EDUCATION_LEVEL_SENIOR_SECONDARY: EducationLevel
EDUCATION_LEVEL_JUNIOR_COLLEGE: EducationLevel
EDUCATION_LEVEL_UNDERGRADUATE: EducationLevel
EDUCATION_LEVEL_POSTGRADUATE: EducationLevel
BENEFIT_UNSPECIFIED: Benefit
BENEFIT_WORK_INJURY_NURSING_ALLOWANCE: Benefit
OUTCOME_UNSPECIFIED: Outcome
OUTCOME_ELIGIBLE: Outcome
OUTCOME_INELIGIBLE: Outcome
OUTCOME_UNDETERMINED: Outcome
RULE_RESULT_UNSPECIFIED: RuleResult
RULE_RESULT_PASSED: RuleResult
RULE_RESULT_FAILED: RuleResult
RULE_RESULT_UNKNOWN: RuleResult

class Disability(_message.Message):
    __slots__ = ("grade", "category")
    GRADE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    grade: int
    category: DisabilityCategory
    def __init__(self, grade: _Optional[int] = ..., category: _Optional[_Union[DisabilityCategory, str]] = ...) -> None: ...

class CapacityAssessment(_message.Message):
    __slots__ = ("level", "assessed_on")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    ASSESSED_ON_FIELD_NUMBER: _ClassVar[int]
    level: CapacityLevel
    assessed_on: str
    def __init__(self, level: _Optional[_Union[CapacityLevel, str]] = ..., assessed_on: _Optional[str] = ...) -> None: ...

class Person(_message.Message):
    __slots__ = ("id_number", "birth_date", "region_code", "household_status", "household_income_per_head_fen", "own_income_fen", "disability", "long_term_care_need", "self_care", "in_institutional_care", "capacity_assessment", "child_status", "in_full_time_education", "serious_illness", "depends_on_family_support", "other_benefits", "education_level")
    ID_NUMBER_FIELD_NUMBER: _ClassVar[int]
    BIRTH_DATE_FIELD_NUMBER: _ClassVar[int]
    REGION_CODE_FIELD_NUMBER: _ClassVar[int]
    HOUSEHOLD_STATUS_FIELD_NUMBER: _ClassVar[int]
    HOUSEHOLD_INCOME_PER_HEAD_FEN_FIELD_NUMBER: _ClassVar[int]
    OWN_INCOME_FEN_FIELD_NUMBER: _ClassVar[int]
    DISABILITY_FIELD_NUMBER: _ClassVar[int]
    LONG_TERM_CARE_NEED_FIELD_NUMBER: _ClassVar[int]
    SELF_CARE_FIELD_NUMBER: _ClassVar[int]
    IN_INSTITUTIONAL_CARE_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_ASSESSMENT_FIELD_NUMBER: _ClassVar[int]
    CHILD_STATUS_FIELD_NUMBER: _ClassVar[int]
    IN_FULL_TIME_EDUCATION_FIELD_NUMBER: _ClassVar[int]
    SERIOUS_ILLNESS_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FAMILY_SUPPORT_FIELD_NUMBER: _ClassVar[int]
    OTHER_BENEFITS_FIELD_NUMBER: _ClassVar[int]
    EDUCATION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    id_number: str
    birth_date: str
    region_code: str
    household_status: HouseholdStatus
    household_income_per_head_fen: int
    own_income_fen: int
    disability: Disability
    long_term_care_need: bool
    self_care: SelfCare
    in_institutional_care: bool
    capacity_assessment: CapacityAssessment
    child_status: ChildStatus
    in_full_time_education: bool
    serious_illness: bool
    depends_on_family_support: bool
    other_benefits: _containers.RepeatedScalarFieldContainer[Benefit]
    education_level: EducationLevel
    def __init__(self, id_number: _Optional[str] = ..., birth_date: _Optional[str] = ..., region_code: _Optional[str] = ..., household_status: _Optional[_Union[HouseholdStatus, str]] = ..., household_income_per_head_fen: _Optional[int] = ..., own_income_fen: _Optional[int] = ..., disability: _Optional[_Union[Disability, _Mapping]] = ..., long_term_care_need: _Optional[bool] = ..., self_care: _Optional[_Union[SelfCare, str]] = ..., in_institutional_care: _Optional[bool] = ..., capacity_assessment: _Optional[_Union[CapacityAssessment, _Mapping]] = ..., child_status: _Optional[_Union[ChildStatus, str]] = ..., in_full_time_education: _Optional[bool] = ..., serious_illness: _Optional[bool] = ..., depends_on_family_support: _Optional[bool] = ..., other_benefits: _Optional[_Iterable[_Union[Benefit, str]]] = ..., education_level: _Optional[_Union[EducationLevel, str]] = ...) -> None: ...

class EvaluateRequest(_message.Message):
    __slots__ = ("person", "as_of", "programs")
    PERSON_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    PROGRAMS_FIELD_NUMBER: _ClassVar[int]
    person: Person
    as_of: str
    programs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, person: _Optional[_Union[Person, _Mapping]] = ..., as_of: _Optional[str] = ..., programs: _Optional[_Iterable[str]] = ...) -> None: ...

class Money(_message.Message):
    __slots__ = ("fen",)
    FEN_FIELD_NUMBER: _ClassVar[int]
    fen: int
    def __init__(self, fen: _Optional[int] = ...) -> None: ...

class Reason(_message.Message):
    __slots__ = ("rule_id", "result", "text_zh", "text_en", "citation", "kind", "citation_zh", "confidence")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    TEXT_ZH_FIELD_NUMBER: _ClassVar[int]
    TEXT_EN_FIELD_NUMBER: _ClassVar[int]
    CITATION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CITATION_ZH_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    result: RuleResult
    text_zh: str
    text_en: str
    citation: str
    kind: str
    citation_zh: str
    confidence: str
    def __init__(self, rule_id: _Optional[str] = ..., result: _Optional[_Union[RuleResult, str]] = ..., text_zh: _Optional[str] = ..., text_en: _Optional[str] = ..., citation: _Optional[str] = ..., kind: _Optional[str] = ..., citation_zh: _Optional[str] = ..., confidence: _Optional[str] = ...) -> None: ...

class Assumption(_message.Message):
    __slots__ = ("fact", "value", "rule_id", "label_zh", "label_en")
    FACT_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_ZH_FIELD_NUMBER: _ClassVar[int]
    LABEL_EN_FIELD_NUMBER: _ClassVar[int]
    fact: str
    value: str
    rule_id: str
    label_zh: str
    label_en: str
    def __init__(self, fact: _Optional[str] = ..., value: _Optional[str] = ..., rule_id: _Optional[str] = ..., label_zh: _Optional[str] = ..., label_en: _Optional[str] = ...) -> None: ...

class Caveat(_message.Message):
    __slots__ = ("kind", "subject", "text_zh", "text_en")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    TEXT_ZH_FIELD_NUMBER: _ClassVar[int]
    TEXT_EN_FIELD_NUMBER: _ClassVar[int]
    kind: str
    subject: str
    text_zh: str
    text_en: str
    def __init__(self, kind: _Optional[str] = ..., subject: _Optional[str] = ..., text_zh: _Optional[str] = ..., text_en: _Optional[str] = ...) -> None: ...

class MissingFact(_message.Message):
    __slots__ = ("fact", "rule_id", "label_zh", "label_en")
    FACT_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_ZH_FIELD_NUMBER: _ClassVar[int]
    LABEL_EN_FIELD_NUMBER: _ClassVar[int]
    fact: str
    rule_id: str
    label_zh: str
    label_en: str
    def __init__(self, fact: _Optional[str] = ..., rule_id: _Optional[str] = ..., label_zh: _Optional[str] = ..., label_en: _Optional[str] = ...) -> None: ...

class Interaction(_message.Message):
    __slots__ = ("rule_id", "kind", "programs", "amounts", "kept_program", "text_zh", "text_en", "citation", "citation_zh")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PROGRAMS_FIELD_NUMBER: _ClassVar[int]
    AMOUNTS_FIELD_NUMBER: _ClassVar[int]
    KEPT_PROGRAM_FIELD_NUMBER: _ClassVar[int]
    TEXT_ZH_FIELD_NUMBER: _ClassVar[int]
    TEXT_EN_FIELD_NUMBER: _ClassVar[int]
    CITATION_FIELD_NUMBER: _ClassVar[int]
    CITATION_ZH_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    kind: str
    programs: _containers.RepeatedScalarFieldContainer[str]
    amounts: _containers.RepeatedCompositeFieldContainer[Money]
    kept_program: str
    text_zh: str
    text_en: str
    citation: str
    citation_zh: str
    def __init__(self, rule_id: _Optional[str] = ..., kind: _Optional[str] = ..., programs: _Optional[_Iterable[str]] = ..., amounts: _Optional[_Iterable[_Union[Money, _Mapping]]] = ..., kept_program: _Optional[str] = ..., text_zh: _Optional[str] = ..., text_en: _Optional[str] = ..., citation: _Optional[str] = ..., citation_zh: _Optional[str] = ...) -> None: ...

class Referral(_message.Message):
    __slots__ = ("rule_id", "text_zh", "text_en", "citation", "conditional", "conditions", "citation_zh")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_ZH_FIELD_NUMBER: _ClassVar[int]
    TEXT_EN_FIELD_NUMBER: _ClassVar[int]
    CITATION_FIELD_NUMBER: _ClassVar[int]
    CONDITIONAL_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    CITATION_ZH_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    text_zh: str
    text_en: str
    citation: str
    conditional: bool
    conditions: _containers.RepeatedCompositeFieldContainer[MissingFact]
    citation_zh: str
    def __init__(self, rule_id: _Optional[str] = ..., text_zh: _Optional[str] = ..., text_en: _Optional[str] = ..., citation: _Optional[str] = ..., conditional: _Optional[bool] = ..., conditions: _Optional[_Iterable[_Union[MissingFact, _Mapping]]] = ..., citation_zh: _Optional[str] = ...) -> None: ...

class ProgramDecision(_message.Message):
    __slots__ = ("program_id", "name_zh", "name_en", "outcome", "monthly_amount", "amount_before_interactions", "reasons", "missing_facts", "interactions", "assumptions")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_ZH_FIELD_NUMBER: _ClassVar[int]
    NAME_EN_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    MONTHLY_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_BEFORE_INTERACTIONS_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    MISSING_FACTS_FIELD_NUMBER: _ClassVar[int]
    INTERACTIONS_FIELD_NUMBER: _ClassVar[int]
    ASSUMPTIONS_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    name_zh: str
    name_en: str
    outcome: Outcome
    monthly_amount: Money
    amount_before_interactions: Money
    reasons: _containers.RepeatedCompositeFieldContainer[Reason]
    missing_facts: _containers.RepeatedCompositeFieldContainer[MissingFact]
    interactions: _containers.RepeatedCompositeFieldContainer[Interaction]
    assumptions: _containers.RepeatedCompositeFieldContainer[Assumption]
    def __init__(self, program_id: _Optional[str] = ..., name_zh: _Optional[str] = ..., name_en: _Optional[str] = ..., outcome: _Optional[_Union[Outcome, str]] = ..., monthly_amount: _Optional[_Union[Money, _Mapping]] = ..., amount_before_interactions: _Optional[_Union[Money, _Mapping]] = ..., reasons: _Optional[_Iterable[_Union[Reason, _Mapping]]] = ..., missing_facts: _Optional[_Iterable[_Union[MissingFact, _Mapping]]] = ..., interactions: _Optional[_Iterable[_Union[Interaction, _Mapping]]] = ..., assumptions: _Optional[_Iterable[_Union[Assumption, _Mapping]]] = ...) -> None: ...

class ParameterValue(_message.Message):
    __slots__ = ("parameter", "value", "unit", "region_code", "effective_from", "source", "confidence")
    PARAMETER_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    REGION_CODE_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_FROM_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    parameter: str
    value: str
    unit: str
    region_code: str
    effective_from: str
    source: str
    confidence: str
    def __init__(self, parameter: _Optional[str] = ..., value: _Optional[str] = ..., unit: _Optional[str] = ..., region_code: _Optional[str] = ..., effective_from: _Optional[str] = ..., source: _Optional[str] = ..., confidence: _Optional[str] = ...) -> None: ...

class ResolvedRegion(_message.Message):
    __slots__ = ("code", "name_zh", "name_en", "level", "in_zhejiang")
    CODE_FIELD_NUMBER: _ClassVar[int]
    NAME_ZH_FIELD_NUMBER: _ClassVar[int]
    NAME_EN_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    IN_ZHEJIANG_FIELD_NUMBER: _ClassVar[int]
    code: str
    name_zh: str
    name_en: str
    level: str
    in_zhejiang: bool
    def __init__(self, code: _Optional[str] = ..., name_zh: _Optional[str] = ..., name_en: _Optional[str] = ..., level: _Optional[str] = ..., in_zhejiang: _Optional[bool] = ...) -> None: ...

class EvaluateResponse(_message.Message):
    __slots__ = ("policy_version", "evaluation_date", "region", "decisions", "referrals", "parameters", "from_cache", "request_hash", "total_monthly_amount", "caveats")
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_DATE_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    REFERRALS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    FROM_CACHE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_HASH_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MONTHLY_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CAVEATS_FIELD_NUMBER: _ClassVar[int]
    policy_version: str
    evaluation_date: str
    region: ResolvedRegion
    decisions: _containers.RepeatedCompositeFieldContainer[ProgramDecision]
    referrals: _containers.RepeatedCompositeFieldContainer[Referral]
    parameters: _containers.RepeatedCompositeFieldContainer[ParameterValue]
    from_cache: bool
    request_hash: str
    total_monthly_amount: Money
    caveats: _containers.RepeatedCompositeFieldContainer[Caveat]
    def __init__(self, policy_version: _Optional[str] = ..., evaluation_date: _Optional[str] = ..., region: _Optional[_Union[ResolvedRegion, _Mapping]] = ..., decisions: _Optional[_Iterable[_Union[ProgramDecision, _Mapping]]] = ..., referrals: _Optional[_Iterable[_Union[Referral, _Mapping]]] = ..., parameters: _Optional[_Iterable[_Union[ParameterValue, _Mapping]]] = ..., from_cache: _Optional[bool] = ..., request_hash: _Optional[str] = ..., total_monthly_amount: _Optional[_Union[Money, _Mapping]] = ..., caveats: _Optional[_Iterable[_Union[Caveat, _Mapping]]] = ...) -> None: ...

class EvaluateBatchRequest(_message.Message):
    __slots__ = ("ref", "request")
    REF_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    ref: str
    request: EvaluateRequest
    def __init__(self, ref: _Optional[str] = ..., request: _Optional[_Union[EvaluateRequest, _Mapping]] = ...) -> None: ...

class FieldError(_message.Message):
    __slots__ = ("field", "description")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    field: str
    description: str
    def __init__(self, field: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class BatchError(_message.Message):
    __slots__ = ("code", "message", "field_errors")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIELD_ERRORS_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    field_errors: _containers.RepeatedCompositeFieldContainer[FieldError]
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., field_errors: _Optional[_Iterable[_Union[FieldError, _Mapping]]] = ...) -> None: ...

class EvaluateBatchResponse(_message.Message):
    __slots__ = ("ref", "index", "response", "error")
    REF_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ref: str
    index: int
    response: EvaluateResponse
    error: BatchError
    def __init__(self, ref: _Optional[str] = ..., index: _Optional[int] = ..., response: _Optional[_Union[EvaluateResponse, _Mapping]] = ..., error: _Optional[_Union[BatchError, _Mapping]] = ...) -> None: ...

class ListProgramsRequest(_message.Message):
    __slots__ = ("as_of", "region_code")
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    REGION_CODE_FIELD_NUMBER: _ClassVar[int]
    as_of: str
    region_code: str
    def __init__(self, as_of: _Optional[str] = ..., region_code: _Optional[str] = ...) -> None: ...

class ProgramInfo(_message.Message):
    __slots__ = ("program_id", "name_zh", "name_en", "citation", "rule_ids")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_ZH_FIELD_NUMBER: _ClassVar[int]
    NAME_EN_FIELD_NUMBER: _ClassVar[int]
    CITATION_FIELD_NUMBER: _ClassVar[int]
    RULE_IDS_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    name_zh: str
    name_en: str
    citation: str
    rule_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, program_id: _Optional[str] = ..., name_zh: _Optional[str] = ..., name_en: _Optional[str] = ..., citation: _Optional[str] = ..., rule_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ListProgramsResponse(_message.Message):
    __slots__ = ("policy_version", "as_of", "programs", "parameters")
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    PROGRAMS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    policy_version: str
    as_of: str
    programs: _containers.RepeatedCompositeFieldContainer[ProgramInfo]
    parameters: _containers.RepeatedCompositeFieldContainer[ParameterValue]
    def __init__(self, policy_version: _Optional[str] = ..., as_of: _Optional[str] = ..., programs: _Optional[_Iterable[_Union[ProgramInfo, _Mapping]]] = ..., parameters: _Optional[_Iterable[_Union[ParameterValue, _Mapping]]] = ...) -> None: ...
