"""Synthetic Korean dialogue-summarization data in the competition format.

The generator is deterministic (stdlib ``random.Random(seed)`` only) and renders each
dialogue and its summaries from the same slot values, so the summaries follow from the
dialogue. Topics and templates are data (``TOPICS``); the code below only fills them in.

Usage:
    python -m competition.sample_data --out data/sample --seed 0
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

DEFAULT_SEED = 0
DEFAULT_COUNTS = {"train": 300, "dev": 60, "test": 60}
SUBMISSION_PLACEHOLDER = "요약문입니다."
MAX_TURNS = 14
MIN_TURNS = 4

# --------------------------------------------------------------------------------------
# Template data
# --------------------------------------------------------------------------------------
# A template line is "role: text" with role a, b or c; roles become #Person1#.. in order
# of first appearance. Placeholders: {slot} or {slot:particle}; roles are slots too
# ({a:은} -> "#Person1#은"). A slot key "x,y" draws one tuple and binds x and y together,
# so correlated values (a symptom and its advice) stay consistent.

SlotPools = dict[str, tuple]


@dataclass(frozen=True)
class DialogueTemplate:
    """One dialogue shape with exactly three summary phrasings (used as test references)."""

    register: str  # "polite" or "casual": selects filler and elaboration pools
    lines: tuple[str, ...]
    summaries: tuple[str, str, str]
    slots: SlotPools = field(default_factory=dict)  # template-only slots, added to the topic's
    nameable: str = ""  # role that may be given a first name (addressed in the first line)


@dataclass(frozen=True)
class TopicSpec:
    """A topic label (the ``topic`` column), shared slot pools and its templates."""

    topic: str
    slots: SlotPools
    templates: tuple[DialogueTemplate, ...]


CASUAL_NAMES = ("민수", "지영", "Jimmy", "수진", "태호", "하은", "Tom", "서연")

TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(
        topic="의사 상담",
        slots={
            "symptom,symptom_n,trigger,advice,advice_s": (
                ("요즘 숨쉬기가 좀 힘들어요", "호흡 곤란", "계단을 오를 때 특히 심해요",
                 "천식 검사를 받아 보시는 게 좋겠어요", "천식 검사를 받아 볼 것"),
                ("며칠째 머리가 깨질 것처럼 아파요", "두통", "아침에 일어날 때 특히 심해요",
                 "당분간 화면 보는 시간을 줄이고 충분히 주무세요", "화면 보는 시간을 줄이고 충분히 잘 것"),
                ("허리가 계속 쑤셔요", "허리 통증", "오래 앉아 있으면 더 심해져요",
                 "일주일에 두 번 물리 치료를 받으세요", "일주일에 두 번 물리 치료를 받을 것"),
                ("밥만 먹으면 속이 더부룩해요", "소화 불량", "저녁을 늦게 먹으면 특히 그래요",
                 "저녁을 일찍 드시고 기름진 음식은 피하세요", "저녁을 일찍 먹고 기름진 음식을 피할 것"),
                ("밤에 잠을 잘 못 자요", "불면증", "새벽 두세 시까지 잠이 안 와요",
                 "자기 전에는 커피와 휴대폰을 멀리하세요", "자기 전에 커피와 휴대폰을 멀리할 것"),
                ("목이 따끔거리고 기침이 나요", "기침과 인후통", "밤에 기침이 더 심해요",
                 "따뜻한 물을 자주 드시고 사흘 뒤에 다시 오세요", "따뜻한 물을 자주 마시고 사흘 뒤에 다시 올 것"),
            ),
            "duration": ("사흘", "일주일", "2주", "한 달"),
        },
        templates=(
            DialogueTemplate(
                register="polite",
                lines=(
                    "a: 안녕하세요, 어디가 불편해서 오셨어요?",
                    "b: {symptom}.",
                    "a: 언제부터 그러셨어요?",
                    "b: {duration} 정도 됐어요. {trigger}.",
                    "a: 혹시 드시는 약이나 알레르기가 있으세요?",
                    "b: 아니요, 특별히 없어요.",
                    "a: 그럼 {advice}.",
                    "b: 알겠습니다. 감사합니다, 선생님.",
                ),
                summaries=(
                    "{b:은} {duration} 전부터 {symptom_n:으로} 고생하고 있습니다. 의사인 {a:은} {b:에게} {advice_s:을} 권합니다.",
                    "{b:이} {symptom_n:으로} 진료를 받습니다. 의사는 증상을 확인한 뒤 {advice_s:을} 조언합니다.",
                    "의사는 {duration}째 {symptom_n:을} 겪고 있는 {b:에게} {advice_s:을} 권합니다.",
                ),
            ),
            DialogueTemplate(
                register="polite",
                lines=(
                    "a: 선생님, {symptom}.",
                    "b: 그런 증상이 얼마나 되셨죠?",
                    "a: {duration}쯤 됐어요. {trigger}.",
                    "b: 진찰해 보니 큰 문제는 없어 보여요. 그래도 {advice}.",
                    "a: 약도 먹어야 하나요?",
                    "b: 일단은 괜찮아요. 나아지지 않으면 다시 오세요.",
                    "a: 네, 그렇게 할게요.",
                ),
                summaries=(
                    "{a:은} {symptom_n:으로} 의사인 {b:을} 찾아갑니다. {b:은} 큰 문제는 없다며 {advice_s:을} 권합니다.",
                    "{a:이} {duration}째 이어진 {symptom_n:에} 대해 상담합니다. 의사는 {advice_s:을} 조언하고 나아지지 않으면 다시 오라고 합니다.",
                    "의사인 {b:은} {symptom_n:을} 호소하는 {a:에게} {advice_s:을} 권합니다.",
                ),
            ),
        ),
    ),
    TopicSpec(
        topic="쇼핑",
        slots={
            "item": ("운동화", "청바지", "겨울 코트", "무선 이어폰", "가죽 지갑", "노트북 가방"),
            "color": ("검은색", "흰색", "남색", "회색", "베이지색"),
            "price": ("3만 9천 원", "5만 원", "8만 2천 원", "12만 원", "6만 5천 원"),
            "discount": ("10%", "20%", "15%", "30%"),
            "days": ("사흘", "일주일", "이틀", "닷새"),
        },
        templates=(
            DialogueTemplate(
                register="polite",
                lines=(
                    "a: 어서 오세요. 찾으시는 물건 있으세요?",
                    "b: {item:을} 보러 왔어요. {color:으로} 있을까요?",
                    "a: 네, 이쪽에 있어요. 이번 주에 {discount} 할인 중이에요.",
                    "b: 가격이 얼마예요?",
                    "a: 할인해서 {price}입니다.",
                    "b: 좋네요. 이걸로 할게요.",
                    "a: 영수증은 이메일로 보내 드릴까요?",
                    "b: 네, #Email#로 보내 주세요.",
                ),
                summaries=(
                    "{b:은} {color} {item:을} {discount} 할인된 {price:에} 삽니다.",
                    "{b:이} 매장에서 {color} {item:을} 구입하고, 영수증을 이메일로 받기로 합니다.",
                    "점원인 {a:은} {b:에게} {discount} 할인 중인 {color} {item:을} {price:에} 판매합니다.",
                ),
            ),
            DialogueTemplate(
                register="polite",
                slots={
                    "item2,defect,defect_s": (
                        ("운동화", "한쪽 밑창이 떨어져 있어요", "밑창이 떨어져 있어서"),
                        ("청바지", "색이 사진이랑 완전히 달라요", "색이 사진과 달라서"),
                        ("겨울 코트", "지퍼가 고장 나 있어요", "지퍼가 고장 나서"),
                        ("무선 이어폰", "한쪽에서 소리가 아예 안 나요", "한쪽에서 소리가 나지 않아서"),
                        ("전기 주전자", "전원이 아예 안 켜져요", "전원이 켜지지 않아서"),
                    ),
                },
                lines=(
                    "a: 여보세요, 지난주에 산 {item2} 때문에 전화드렸어요.",
                    "b: 네, 고객님. 어떤 문제가 있으신가요?",
                    "a: {defect}. 교환하고 싶어요.",
                    "b: 불편을 드려 죄송합니다. 결제하신 카드 번호가 #CardNumber# 맞으세요?",
                    "a: 네, 맞아요.",
                    "b: 확인됐습니다. 새 제품은 {days} 안에 보내 드릴게요.",
                    "a: 감사합니다.",
                ),
                summaries=(
                    "{a:은} 지난주에 산 {item2:이} {defect_s} 교환을 요청합니다. {b:은} {days} 안에 새 제품을 보내 주기로 합니다.",
                    "{a:이} 고객 센터에 전화해 {item2} 교환을 요청하고, 상담원은 {days} 안에 새 제품을 보내겠다고 합니다.",
                    "{b:은} {item2:이} {defect_s} 전화한 {a:에게} {days} 안에 교환 제품을 보내 주겠다고 약속합니다.",
                ),
            ),
        ),
    ),
    TopicSpec(
        topic="여행 계획",
        slots={
            "month": ("다음 달", "여름 방학", "추석 연휴", "12월"),
            "nights": ("2박 3일", "3박 4일", "4박 5일"),
            "budget": ("30만 원", "50만 원", "80만 원", "100만 원"),
        },
        templates=(
            DialogueTemplate(
                register="casual",
                nameable="b",
                slots={
                    "dest": ("제주도", "부산", "강릉", "여수", "경주"),
                    "activity,activity_s": (
                        ("바다에서 스노클링 하자", "스노클링을 하기"),
                        ("시장 가서 맛있는 거 잔뜩 먹자", "시장 음식을 먹기"),
                        ("새벽에 산에 올라가서 일출 보자", "일출을 보기"),
                        ("자전거 빌려서 해안 도로 달리자", "해안 도로에서 자전거를 타기"),
                    ),
                },
                lines=(
                    "a: 우리 {month:에} 여행 가는 거 어때?",
                    "b: 좋지! 어디로 갈까?",
                    "a: {dest} 어때? {nights:으로} 다녀오자.",
                    "b: 괜찮다. 가서 뭐 할 건데?",
                    "a: {activity}.",
                    "b: 완전 좋아. 예산은 한 사람당 얼마 생각해?",
                    "a: {budget} 정도면 될 것 같아.",
                    "b: 알았어. 숙소는 내가 알아볼게.",
                ),
                summaries=(
                    "{a:은} {b:에게} {month:에} {nights:으로} {dest} 여행을 가자고 제안합니다. 둘은 {activity_s:로} 하고 {b:이} 숙소를 알아보기로 합니다.",
                    "{a:와} {b:은} {month:에} {dest:으로} {nights} 여행을 계획합니다. 예산은 1인당 {budget} 정도입니다.",
                    "{a:이} {dest} 여행을 제안하자 {b:은} 찬성하고 숙소를 알아보겠다고 합니다. 여행 중에는 {activity_s:로} 합니다.",
                ),
            ),
            DialogueTemplate(
                register="polite",
                slots={"abroad": ("오사카", "방콕", "다낭", "타이베이", "싱가포르")},
                lines=(
                    "a: 안녕하세요, 여행사입니다. 무엇을 도와드릴까요?",
                    "b: {month:에} {abroad} 가는 항공권이랑 호텔을 예약하고 싶어요.",
                    "a: 며칠 일정으로 생각하세요?",
                    "b: {nights:으로} 가려고요. 예산은 {budget} 정도예요.",
                    "a: 그 예산이면 충분합니다. 여권 번호를 알려 주시겠어요?",
                    "b: #PassportNumber#입니다.",
                    "a: 감사합니다. 일정표는 #Email#로 보내 드릴게요.",
                    "b: 네, 부탁드립니다.",
                ),
                summaries=(
                    "{b:은} 여행사 직원인 {a:에게} {month:에} {nights} 일정의 {abroad} 항공권과 호텔 예약을 부탁합니다.",
                    "{b:이} {budget} 예산으로 {abroad} 여행을 예약하고 여권 번호를 알려 줍니다. {a:은} 일정표를 이메일로 보내 주기로 합니다.",
                    "{a:은} {b:의} {abroad} 여행 예약을 도와주고, 일정표를 이메일로 보내겠다고 합니다.",
                ),
            ),
        ),
    ),
    TopicSpec(
        topic="식당 예약",
        slots={
            "restaurant": ("한우리 식당", "바다 횟집", "라 피아짜", "소담 한정식", "청담 스시"),
            "people": ("두 명", "세 명", "네 명", "여섯 명"),
            "day": ("이번 주 금요일", "토요일", "다음 주 수요일", "일요일"),
            "time": ("저녁 6시", "저녁 7시 30분", "낮 12시", "저녁 8시"),
        },
        templates=(
            DialogueTemplate(
                register="polite",
                slots={
                    "customer": ("김민수", "이지영", "박준호", "최수진", "Jimmy"),
                    "request,request_s": (
                        ("창가 자리로 부탁드려요.", "창가 자리"),
                        ("아이가 있어서 아기 의자가 필요해요.", "아기 의자"),
                        ("조용한 룸으로 해 주세요.", "조용한 룸"),
                        ("생일이라 케이크를 가져가도 될까요?", "케이크 반입"),
                    ),
                },
                lines=(
                    "a: 감사합니다, {restaurant}입니다.",
                    "b: 안녕하세요, {day} {time:에} {people} 예약하고 싶은데요.",
                    "a: 네, 가능합니다. 성함과 연락처를 알려 주시겠어요?",
                    "b: 이름은 {customer}, 번호는 #PhoneNumber#예요.",
                    "a: 혹시 따로 요청하실 사항 있으세요?",
                    "b: {request}",
                    "a: 네, 준비해 두겠습니다. 예약 완료되었습니다.",
                    "b: 감사합니다.",
                ),
                summaries=(
                    "{b:은} {restaurant:에} 전화해 {day} {time:에} {people} 자리를 예약하고 {request_s:을} 요청합니다.",
                    "{b:이} {day} {time} {people} 예약을 하고 연락처를 남깁니다. {a:은} 요청 사항을 준비해 두겠다고 합니다.",
                    "{restaurant} 직원인 {a:은} {b:의} {day} {time} {people} 예약을 받습니다.",
                ),
            ),
            DialogueTemplate(
                register="casual",
                nameable="b",
                lines=(
                    "a: {day:에} 우리 어디서 저녁 먹을까?",
                    "b: {restaurant} 어때? 거기 요즘 유명하더라.",
                    "a: 좋아, 내가 예약할게. 몇 시가 좋아?",
                    "b: {time} 괜찮아?",
                    "a: 응. 그럼 {people:으로} 예약해 둘게.",
                    "b: 고마워. 그날 보자.",
                ),
                summaries=(
                    "{a:와} {b:은} {day:에} {restaurant:에서} 저녁을 먹기로 합니다. {a:이} {time:에} {people:으로} 예약하기로 합니다.",
                    "{b:이} {restaurant:을} 추천하고, {a:은} {day} {time:으로} 예약하겠다고 합니다.",
                    "{a:은} {b:와} {day} 저녁 약속을 잡고 {restaurant:에} {people:으로} 예약하기로 합니다.",
                ),
            ),
        ),
    ),
    TopicSpec(
        topic="취업 면접",
        slots={
            "company": ("한빛전자", "미래물산", "새솔소프트", "푸른식품", "다온건설"),
            "position": ("마케팅", "회계", "소프트웨어 개발", "영업", "디자인"),
            "strength,strength_s": (
                ("저는 팀원들과 소통하는 걸 잘해요", "소통 능력"),
                ("마감 기한을 한 번도 어긴 적이 없어요", "책임감"),
                ("새로운 걸 빨리 배우는 편이에요", "빠른 학습 능력"),
                ("데이터를 분석해서 문제를 찾는 걸 좋아해요", "분석력"),
            ),
        },
        templates=(
            DialogueTemplate(
                register="polite",
                slots={
                    "years": ("1년", "2년", "3년", "5년"),
                    "result_day": ("다음 주 월요일", "이번 주 금요일", "사흘 안에", "일주일 안에"),
                },
                lines=(
                    "a: {company} {position} 직무 면접에 와 주셔서 감사합니다. 자기소개 부탁드립니다.",
                    "b: 안녕하세요. 저는 이 분야에서 {years} 동안 일했습니다.",
                    "a: 본인의 강점은 무엇이라고 생각하세요?",
                    "b: {strength}.",
                    "a: 왜 우리 회사에 지원하셨나요?",
                    "b: {company}의 성장 가능성을 보고 지원했습니다.",
                    "a: 좋습니다. 결과는 {result_day} #Email#로 알려 드리겠습니다.",
                    "b: 감사합니다.",
                ),
                summaries=(
                    "{b:은} {company} {position} 직무 면접을 봅니다. {b:은} {years} 경력과 {strength_s:을} 강점으로 내세웁니다.",
                    "{a:은} {b:에게} 경력과 강점, 지원 동기를 묻고 결과를 {result_day} 이메일로 알려 주겠다고 합니다.",
                    "{position} 직무에 지원한 {b:이} 면접에서 {strength_s:을} 강조하고, {a:은} {result_day} 결과를 알려 주기로 합니다.",
                ),
            ),
            DialogueTemplate(
                register="casual",
                nameable="b",
                lines=(
                    "a: 너 내일 면접 본다며? 어디야?",
                    "b: {company}. {position} 직무로 지원했어.",
                    "a: 와, 잘됐다. 준비는 다 했어?",
                    "b: 거의. 근데 강점을 뭐라고 말할지 모르겠어.",
                    "a: 너는 {strength_s:이} 뛰어나잖아. 그걸 예로 들어서 말해.",
                    "b: 좋은 생각이다. 고마워.",
                    "a: 끝나면 연락해. 맛있는 거 사 줄게.",
                ),
                summaries=(
                    "{b:은} 내일 {company} {position} 직무 면접을 봅니다. {a:은} {b:에게} {strength_s:을} 강점으로 말하라고 조언합니다.",
                    "{a:이} 면접을 앞둔 {b:을} 격려하며 {strength_s:을} 강조하라고 합니다.",
                    "{b:이} {company} 면접에서 말할 강점을 고민하자 {a:은} {strength_s:을} 예로 들라고 조언합니다.",
                ),
            ),
        ),
    ),
    TopicSpec(
        topic="은행 업무",
        slots={},
        templates=(
            DialogueTemplate(
                register="polite",
                slots={
                    "task,task_s,done,done_s": (
                        ("새 통장을 만들고 싶어요", "새 통장 개설", "통장은 지금 바로 드릴게요",
                         "통장은 그 자리에서 바로 받습니다"),
                        ("체크카드를 새로 발급받고 싶어요", "체크카드 발급",
                         "카드는 일주일 안에 집으로 보내 드릴게요", "카드는 일주일 안에 집으로 배송됩니다"),
                        ("잃어버린 카드를 재발급받고 싶어요", "분실 카드 재발급",
                         "기존 카드는 정지했고 새 카드는 사흘 안에 나옵니다",
                         "기존 카드는 정지되고 새 카드는 사흘 안에 발급됩니다"),
                    ),
                },
                lines=(
                    "a: 안녕하세요, 무엇을 도와드릴까요?",
                    "b: {task}.",
                    "a: 본인 확인을 위해 주민등록번호를 말씀해 주시겠어요?",
                    "b: #SSN#입니다.",
                    "a: 감사합니다. 연락받으실 번호도 알려 주세요.",
                    "b: #PhoneNumber#예요.",
                    "a: 처리됐습니다. {done}.",
                    "b: 네, 감사합니다.",
                ),
                summaries=(
                    "{b:은} 은행에서 {task_s:을} 신청합니다. 본인 확인을 위해 주민등록번호와 연락처를 알려 주고, {done_s}.",
                    "은행 직원인 {a:은} {b:의} {task_s:을} 처리해 줍니다.",
                    "{b:이} {task_s:을} 요청하자 {a:은} 주민등록번호와 연락처를 확인하고 업무를 처리합니다.",
                ),
            ),
            DialogueTemplate(
                register="polite",
                slots={
                    "currency": ("엔화", "달러", "유로", "바트"),
                    "amount": ("20만 원", "30만 원", "50만 원", "100만 원"),
                },
                lines=(
                    "a: 안녕하세요, 환전하려고 하는데요.",
                    "b: 네, 어느 나라 돈으로 바꾸시겠어요?",
                    "a: {currency:으로} {amount}어치 바꿔 주세요.",
                    "b: 여권을 보여 주시겠어요?",
                    "a: 여기 있어요. 번호는 #PassportNumber#예요.",
                    "b: 환전 우대를 적용해 드렸습니다. 생년월일도 확인할게요.",
                    "a: #DateOfBirth#입니다.",
                    "b: 감사합니다. 여기 {currency:와} 영수증입니다.",
                ),
                summaries=(
                    "{a:은} 은행에서 {amount}어치를 {currency:으로} 환전합니다. {b:은} 여권과 생년월일을 확인하고 환전 우대를 적용해 줍니다.",
                    "{a:이} {currency} 환전을 요청하자 {b:은} 여권을 확인한 뒤 {amount}어치를 바꿔 줍니다.",
                    "은행 직원인 {b:은} {a:의} {currency} 환전을 도와줍니다. {a:은} 여권 번호와 생년월일을 알려 줍니다.",
                ),
            ),
        ),
    ),
    TopicSpec(
        topic="이사",
        slots={},
        templates=(
            DialogueTemplate(
                register="polite",
                slots={
                    "move_day": ("다음 달 5일", "이번 주 토요일", "3월 2일", "이달 말"),
                    "new_area": ("강남구", "분당", "일산", "인천", "수원"),
                    "size,size_s": (
                        ("원룸이라 짐이 많지 않아요", "원룸"),
                        ("방 세 개짜리 아파트예요", "방 세 개짜리 아파트"),
                        ("투룸이고 가구가 좀 많아요", "가구가 많은 투룸"),
                    ),
                    "cost": ("45만 원", "60만 원", "80만 원", "120만 원"),
                },
                lines=(
                    "a: 안녕하세요, 이사 견적 좀 받고 싶어서 전화드렸어요.",
                    "b: 네, 언제 이사하세요?",
                    "a: {move_day:에} 하려고요. 지금 집은 #Address#이고, {new_area:으로} 가요.",
                    "b: 짐은 어느 정도 되나요?",
                    "a: {size}.",
                    "b: 그럼 견적은 {cost}입니다. 당일에는 #CarNumber# 트럭이 갈 거예요.",
                    "a: 좋아요. 그걸로 예약할게요.",
                ),
                summaries=(
                    "{a:은} {move_day:에} {new_area:으로} 이사하기 위해 이사 업체에 견적을 문의합니다. {b:은} {size_s} 짐에 {cost:을} 제시합니다.",
                    "{a:이} {move_day} 이사를 예약합니다. 견적은 {cost}이며 당일 트럭이 배정됩니다.",
                    "이사 업체 직원인 {b:은} {a:의} {new_area} 이사 견적으로 {cost:을} 안내하고 트럭을 보내기로 합니다.",
                ),
            ),
            DialogueTemplate(
                register="casual",
                slots={
                    "room": ("부엌", "안방", "거실", "작은방"),
                    "food": ("짜장면", "피자", "치킨", "삼겹살"),
                },
                lines=(
                    "a: 이사 도와줘서 고마워. 짐이 생각보다 많네.",
                    "b: 별말씀을. 이 상자는 어디에 둘까?",
                    "a: {room:에} 놔 줘.",
                    "c: 나 왔어! 밖에 있는 트럭 번호가 #CarNumber# 맞지?",
                    "a: 응, 맞아. 와 줘서 고마워.",
                    "c: 새 주소가 #Address# 맞지? 나중에 집들이 때 또 올게.",
                    "b: 다 옮기면 우리 {food} 먹자.",
                    "a: 좋아, 오늘은 내가 살게.",
                ),
                summaries=(
                    "{b:와} {c:은} {a:의} 이사를 도와줍니다. {a:은} 고마운 마음에 {food:을} 사기로 합니다.",
                    "{a:이} 이사하는 날 {b:와} {c:이} 와서 짐 옮기는 것을 돕습니다. 일이 끝나면 함께 {food:을} 먹기로 합니다.",
                    "{a:은} 이사를 도와준 {b:와} {c:에게} {food:을} 사겠다고 합니다.",
                ),
            ),
        ),
    ),
    TopicSpec(
        topic="운동 계획",
        slots={},
        templates=(
            DialogueTemplate(
                register="casual",
                nameable="b",
                slots={
                    "time": ("3시 30분", "저녁 7시", "아침 6시", "점심시간"),
                    "place,exercise": (
                        ("체육관", "팔 운동"),
                        ("체육관", "하체 운동"),
                        ("공원", "달리기"),
                        ("수영장", "수영"),
                        ("요가 학원", "요가"),
                    ),
                },
                lines=(
                    "a: 오늘 이따 운동하러 가자.",
                    "b: 그래, 몇 시에 갈래?",
                    "a: {time} 어때?",
                    "b: 좋아. 어디서 할 건데?",
                    "a: {place:에서} {exercise:을} 하자. 요즘 너무 안 움직였어.",
                    "b: 알았어. 그럼 {time:에} {place} 앞에서 보자.",
                ),
                summaries=(
                    "{a:은} {b:에게} {time:에} {place:에서} 만나 {exercise:을} 하자고 제안합니다.",
                    "{a:와} {b:은} {time:에} {place:에서} 함께 {exercise:을} 하기로 합니다.",
                    "{b:은} {a:의} 제안에 따라 {time:에} {place:에서} {exercise:을} 하기로 합니다.",
                ),
            ),
            DialogueTemplate(
                register="polite",
                slots={
                    "months,fee": (("3개월", "15만 원"), ("6개월", "27만 원"), ("1년", "45만 원")),
                    "pt_count": ("1회", "2회", "3회"),
                },
                lines=(
                    "a: 안녕하세요, 헬스장 등록하러 오셨어요?",
                    "b: 네, {months} 회원권은 얼마예요?",
                    "a: {fee}이고, 지금 등록하시면 개인 트레이닝 {pt_count}가 무료예요.",
                    "b: 좋네요. 주차도 되나요?",
                    "a: 네, 차량 번호를 알려 주시면 등록해 드려요.",
                    "b: #CarNumber#예요. 결제는 카드로 할게요.",
                    "a: 네, 등록 완료됐습니다.",
                ),
                summaries=(
                    "{b:은} 헬스장에서 {months} 회원권을 {fee:에} 등록하고 개인 트레이닝 {pt_count:을} 무료로 받습니다.",
                    "{a:은} {b:에게} {months} 회원권 가격과 무료 개인 트레이닝 혜택을 안내하고 주차 등록을 해 줍니다.",
                    "{b:이} {months} 헬스장 회원권을 등록하며 차량 번호를 알려 주차 등록을 합니다.",
                ),
            ),
        ),
    ),
    TopicSpec(
        topic="생일 파티",
        slots={"gift": ("꽃다발", "케이크", "향수", "보드게임")},
        templates=(
            DialogueTemplate(
                register="casual",
                nameable="b",
                slots={
                    "party_day": ("금요일", "토요일", "일요일"),
                    "honoree": ("지수", "현우", "Emily", "민호"),
                    "venue": ("학교 앞 카페", "노래방", "공원", "파티룸"),
                    "cake": ("초코 케이크", "딸기 케이크", "치즈 케이크"),
                },
                lines=(
                    "a: 다음 주 {party_day:이} {honoree} 생일인 거 알지?",
                    "b: 당연하지. 깜짝 파티 해 줄까?",
                    "a: 좋아! 장소는 {venue} 어때?",
                    "b: 괜찮다. 케이크는 내가 준비할게. {cake} 좋아하잖아.",
                    "a: 그럼 나는 친구들한테 연락 돌릴게.",
                    "b: {honoree}한테는 비밀이야!",
                ),
                summaries=(
                    "{a:와} {b:은} 다음 주 {party_day:에} {venue:에서} {honoree:의} 깜짝 생일 파티를 열기로 합니다. {b:은} {cake:을} 준비하고 {a:은} 친구들에게 연락합니다.",
                    "{a:이} {honoree:의} 깜짝 생일 파티를 제안하고, {b:은} {cake:을} 준비하겠다고 합니다.",
                    "{b:은} {a:와} 함께 {honoree:을} 위한 깜짝 파티를 계획합니다. 파티는 {party_day:에} {venue:에서} 열립니다.",
                ),
            ),
            DialogueTemplate(
                register="casual",
                slots={"party_time": ("저녁 6시", "오후 2시", "저녁 7시")},
                lines=(
                    "a: 이번 주 토요일 내 생일 파티에 올 수 있어?",
                    "b: 당연하지! 몇 시야?",
                    "a: {party_time:부터}야.",
                    "c: 나도 가도 돼?",
                    "a: 물론이지! 주소는 #Address#야. 도착하면 #PhoneNumber#로 전화해.",
                    "b: 선물은 뭐 갖고 싶어?",
                    "a: 그냥 와 주기만 하면 돼.",
                    "c: 그럼 우리가 {gift:을} 준비할게.",
                ),
                summaries=(
                    "{a:은} {b:와} {c:을} 토요일 {party_time:에} 열리는 자신의 생일 파티에 초대합니다. {c:은} {b:와} 함께 {gift:을} 준비하겠다고 합니다.",
                    "{a:이} 생일 파티에 친구들을 초대하고 주소와 연락처를 알려 줍니다. {b:와} {c:은} {gift:을} 선물로 준비하기로 합니다.",
                    "{b:와} {c:은} 토요일 {party_time:에} 열리는 {a:의} 생일 파티에 가기로 합니다.",
                ),
            ),
        ),
    ),
    TopicSpec(
        topic="길 안내",
        slots={},
        templates=(
            DialogueTemplate(
                register="polite",
                slots={
                    "dest_place": ("시청", "중앙 도서관", "국립 박물관", "서울역", "시립 미술관"),
                    "landmark": ("두 번째 신호등", "편의점", "약국", "큰 사거리"),
                    "turn": ("오른쪽", "왼쪽"),
                    "walk": ("5분", "10분", "15분", "20분"),
                },
                lines=(
                    "a: 실례합니다. {dest_place:에} 어떻게 가요?",
                    "b: 이 길로 쭉 가다가 {landmark:에서} {turn:으로} 도세요.",
                    "a: 걸어서 얼마나 걸려요?",
                    "b: {walk} 정도 걸려요.",
                    "a: 버스를 타는 게 나을까요?",
                    "b: 아니요, 걸어가는 게 더 빨라요.",
                    "a: 감사합니다!",
                ),
                summaries=(
                    "{a:은} {b:에게} {dest_place:에} 가는 길을 묻습니다. {b:은} {landmark:에서} {turn:으로} 돌라고 알려 줍니다.",
                    "{b:은} 길을 묻는 {a:에게} {dest_place:까지} 걸어서 {walk} 정도 걸린다고 알려 줍니다.",
                    "{a:이} {dest_place:을} 찾자 {b:은} {landmark:에서} {turn:으로} 돌면 된다고 설명합니다.",
                ),
            ),
            DialogueTemplate(
                register="polite",
                slots={
                    "route,reason,reason_s": (
                        ("빠른 길", "약속에 좀 늦어서요", "약속에 늦어서"),
                        ("큰길", "멀미가 좀 있어서요", "멀미가 있어서"),
                        ("빠른 길", "기차 시간이 다 돼서요", "기차 시간이 임박해서"),
                    ),
                    "ride_time": ("10분", "20분", "30분", "40분"),
                },
                lines=(
                    "a: 안녕하세요, 앱으로 부른 #CarNumber# 택시 맞죠?",
                    "b: 네, 맞습니다. 어디로 모실까요?",
                    "a: #Address#로 가 주세요. {route:으로} 가 주시면 좋겠어요. {reason}.",
                    "b: 알겠습니다. {ride_time} 정도 걸릴 거예요.",
                    "a: 카드 결제 되죠?",
                    "b: 네, 도착하면 카드로 결제해 주세요.",
                    "a: 감사합니다.",
                ),
                summaries=(
                    "{a:은} 택시를 타고 #Address#로 가며 {reason_s} {route:으로} 가 달라고 합니다.",
                    "택시 기사인 {b:은} {a:을} #Address#까지 태워 주며 {ride_time} 정도 걸린다고 말합니다.",
                    "{a:이} {reason_s} 택시 기사 {b:에게} {route:으로} 가 달라고 부탁합니다.",
                ),
            ),
        ),
    ),
    TopicSpec(
        topic="호텔 체크인",
        slots={},
        templates=(
            DialogueTemplate(
                register="polite",
                slots={
                    "hotel": ("그랜드 호텔", "시티 호텔", "오션뷰 호텔", "한강 호텔"),
                    "guest": ("김민수", "이지영", "Jimmy Park", "Sarah Lee"),
                    "nights_h": ("1박", "2박", "3박"),
                    "room": ("스탠다드 룸", "디럭스 룸", "스위트룸", "트윈룸"),
                    "floor": ("7층", "12층", "15층"),
                    "breakfast": ("아침 7시부터 10시까지", "아침 6시 30분부터 9시 30분까지"),
                },
                lines=(
                    "a: 안녕하세요, {hotel:에} 오신 걸 환영합니다.",
                    "b: 체크인하려고요. {guest} 이름으로 예약했어요.",
                    "a: 확인했습니다. {nights_h} 묵으시는 {room} 맞으시죠?",
                    "b: 네, 맞아요.",
                    "a: 여권 번호와 보증금용 카드 번호를 부탁드립니다.",
                    "b: 여권 번호는 #PassportNumber#이고, 카드는 #CardNumber#예요.",
                    "a: 감사합니다. 방은 {floor:이고} 조식은 {breakfast}입니다.",
                    "b: 영수증은 이메일로 받을 수 있나요? #Email#이에요.",
                    "a: 물론입니다. 편안한 시간 보내세요.",
                ),
                summaries=(
                    "{b:은} {hotel:에} 체크인하며 {nights_h} 동안 {room:에} 묵습니다. {a:은} 여권 번호와 카드 번호를 받고 방과 조식 시간을 안내합니다.",
                    "{a:은} {guest} 이름으로 예약한 {b:의} 체크인을 처리합니다. 방은 {floor:의} {room}입니다.",
                    "{b:이} {hotel:에} 도착해 체크인하고 영수증을 이메일로 받기로 합니다.",
                ),
            ),
            DialogueTemplate(
                register="polite",
                slots={
                    "room_no": ("1203", "705", "1508", "310"),
                    "problem,problem_s,fix,fix_s": (
                        ("에어컨이 작동하지 않아요", "에어컨이 작동하지 않는",
                         "바로 직원을 올려 보내 드릴게요", "직원을 보내 주기로"),
                        ("샤워기에서 따뜻한 물이 안 나와요", "따뜻한 물이 나오지 않는",
                         "바로 직원을 올려 보내 드릴게요", "직원을 보내 주기로"),
                        ("옆방이 너무 시끄러워요", "옆방 소음이 심한",
                         "조용한 다른 방으로 옮겨 드릴게요", "다른 방으로 옮겨 주기로"),
                        ("방에 수건이 하나도 없어요", "수건이 없는",
                         "새 수건을 바로 가져다드릴게요", "새 수건을 가져다주기로"),
                    ),
                    "wait": ("10분", "20분", "30분"),
                },
                lines=(
                    "a: 여보세요, {room_no}호인데요.",
                    "b: 네, 프런트입니다. 무엇을 도와드릴까요?",
                    "a: {problem}.",
                    "b: 불편을 드려 죄송합니다. {fix}.",
                    "a: 얼마나 걸릴까요?",
                    "b: {wait} 안에 처리하겠습니다.",
                    "a: 감사합니다. 주차한 차도 확인 부탁드려요. 차량 번호는 #CarNumber#예요.",
                    "b: 네, 주차 등록도 확인해 두겠습니다.",
                ),
                summaries=(
                    "{a:은} 묵고 있는 {room_no}호에 {problem_s} 문제가 있다고 프런트에 알립니다. {b:은} 사과하고 {fix_s} 합니다.",
                    "{b:은} {problem_s} 문제로 전화한 {a:에게} {wait} 안에 처리하겠다고 약속합니다.",
                    "{a:이} 객실 문제를 알리자 {b:은} {fix_s} 하고 주차 등록도 확인해 주겠다고 합니다.",
                ),
            ),
        ),
    ),
    TopicSpec(
        topic="택배 배송",
        slots={},
        templates=(
            DialogueTemplate(
                register="polite",
                slots={
                    "issue,issue_s": (
                        ("주소가 잘못 적혀서 물류 센터에 보관 중이에요",
                         "주소가 잘못 적혀 택배가 물류 센터에 보관되어 있습니다"),
                        ("기사님이 방문하셨는데 부재중이셔서 다시 가져왔대요",
                         "부재중이어서 기사가 택배를 다시 가져갔습니다"),
                        ("폭설 때문에 배송이 늦어지고 있어요", "폭설로 배송이 늦어지고 있습니다"),
                    ),
                    "deliver_day": ("내일", "모레", "이번 주 목요일"),
                },
                lines=(
                    "a: 안녕하세요, 택배가 아직 안 와서 전화드렸어요.",
                    "b: 네, 받는 분 전화번호를 알려 주시겠어요?",
                    "a: #PhoneNumber#예요.",
                    "b: 확인해 보니 {issue}.",
                    "a: 그럼 언제 받을 수 있나요? 주소는 #Address#예요.",
                    "b: {deliver_day} 오후에 다시 배송해 드리겠습니다.",
                    "a: 문 앞에 놔 주세요.",
                    "b: 네, 그렇게 전달하겠습니다.",
                ),
                summaries=(
                    "{a:은} 택배가 오지 않아 택배 회사에 문의합니다. 확인 결과 {issue_s}. 택배는 {deliver_day} 오후에 다시 배송됩니다.",
                    "{b:은} 택배를 받지 못한 {a:에게} {deliver_day} 오후에 다시 배송해 주겠다고 합니다.",
                    "{a:이} 전화번호와 주소를 알려 주자 {b:은} 배송 상황을 확인하고 {deliver_day} 문 앞에 택배를 두기로 합니다.",
                ),
            ),
            DialogueTemplate(
                register="polite",
                slots={
                    "dest_city": ("부산", "대구", "광주", "제주"),
                    "contents": ("책 몇 권", "옷", "김치", "노트북"),
                    "shipping,ship_fee": (("일반 택배", "4천 원"), ("빠른 등기", "6천 원"), ("익일 특급", "8천 원")),
                },
                lines=(
                    "a: 이 상자를 {dest_city:으로} 보내려고 하는데요.",
                    "b: 안에 뭐가 들어 있나요?",
                    "a: {contents:이에요}.",
                    "b: 받는 분 주소와 전화번호를 적어 주세요.",
                    "a: 주소는 #Address#, 번호는 #PhoneNumber#예요.",
                    "b: {shipping:으로} 보내 드릴까요?",
                    "a: 네, 그렇게 해 주세요.",
                    "b: 요금은 {ship_fee}입니다.",
                ),
                summaries=(
                    "{a:은} {contents:을} 담은 상자를 {shipping:으로} {dest_city:에} 보냅니다. 요금은 {ship_fee}입니다.",
                    "{b:은} {a:에게} 받는 사람의 주소와 전화번호를 적게 하고 {shipping} 요금으로 {ship_fee:을} 안내합니다.",
                    "{a:이} {dest_city:으로} 택배를 보내며 {shipping:을} 선택합니다.",
                ),
            ),
        ),
    ),
    TopicSpec(
        topic="학교 수업",
        slots={},
        templates=(
            DialogueTemplate(
                register="polite",
                slots={
                    "course": ("경제학 원론", "통계학", "한국사", "심리학 개론", "컴퓨터 프로그래밍"),
                    "pages": ("세 장", "다섯 장", "열 장"),
                    "deadline": ("다음 주 화요일", "이번 주 금요일", "월말"),
                    "excuse,excuse_s": (
                        ("다음 주에 시험이 세 개나 있어서요", "시험이 몰려 있어"),
                        ("할머니 댁에 다녀와야 해서요", "할머니 댁에 다녀와야 해서"),
                        ("아르바이트 때문에 시간이 부족해서요", "아르바이트로 시간이 부족해"),
                    ),
                    "extension,ext_s": (
                        ("이틀은 미뤄 줄게요", "마감을 이틀 연장해 줍니다"),
                        ("미안하지만 마감은 지켜야 해요", "마감 연장은 어렵다고 합니다"),
                    ),
                },
                lines=(
                    "a: 교수님, {course} 과제에 대해 여쭤볼 게 있어요.",
                    "b: 네, 뭐가 궁금해요?",
                    "a: 보고서 분량이 얼마나 돼야 하나요?",
                    "b: {pages} 정도면 돼요. 마감은 {deadline:이에요}.",
                    "a: 혹시 마감을 조금 미뤄 주실 수 있을까요? {excuse}.",
                    "b: {extension}.",
                    "a: 알겠습니다. 감사합니다.",
                ),
                summaries=(
                    "{a:은} {b:에게} {course} 보고서 분량과 마감을 묻습니다. {b:은} {pages} 정도면 된다고 하고, {ext_s}.",
                    "{a:이} {excuse_s} {course} 보고서 마감 연장을 부탁하자 교수인 {b:은} {ext_s}.",
                    "{course} 보고서는 {pages} 분량으로 {deadline:까지} 내야 합니다. {a:은} 연장을 요청하고 {b:은} {ext_s}.",
                ),
            ),
            DialogueTemplate(
                register="casual",
                nameable="b",
                slots={
                    "course2,lesson": (
                        ("경제학", "수요와 공급"),
                        ("통계학", "회귀 분석"),
                        ("한국사", "조선 시대"),
                        ("심리학", "기억의 원리"),
                        ("프로그래밍", "반복문"),
                    ),
                },
                lines=(
                    "a: 오늘 {course2} 수업 들었어?",
                    "b: 아니, 늦잠 자서 못 갔어. 뭐 배웠어?",
                    "a: {lesson:에} 대해 배웠어.",
                    "b: 필기 좀 빌려줄 수 있어?",
                    "a: 그래. 네 이메일 #Email# 맞지? 이따 보내 줄게.",
                    "b: 응, 맞아. 고마워! 다음 주 퀴즈 범위도 거기까지야?",
                    "a: 응, {lesson:까지}야.",
                ),
                summaries=(
                    "{b:은} 늦잠을 자서 {course2} 수업에 빠집니다. {a:은} {lesson:에} 대해 배웠다며 필기를 이메일로 보내 주기로 합니다.",
                    "{a:이} 수업에 빠진 {b:에게} {course2} 필기를 이메일로 보내 주겠다고 합니다.",
                    "{a:은} {b:에게} 오늘 {course2} 수업에서 {lesson:을} 배웠고 다음 주 퀴즈 범위도 거기까지라고 알려 줍니다.",
                ),
            ),
        ),
    ),
    TopicSpec(
        topic="휴대폰 개통",
        slots={"phone_model": ("갤럭시 S24", "아이폰 15", "갤럭시 Z 플립", "아이폰 SE")},
        templates=(
            DialogueTemplate(
                register="polite",
                slots={
                    "plan,plan_s": (
                        ("데이터 무제한 요금제로 해 주세요", "데이터 무제한 요금제"),
                        ("한 달에 5만 원짜리 요금제가 좋겠어요", "월 5만 원 요금제"),
                        ("제일 저렴한 요금제로 할게요", "가장 저렴한 요금제"),
                    ),
                    "gift_item": ("휴대폰 케이스", "충전기", "보조 배터리"),
                },
                lines=(
                    "a: 어서 오세요. 어떤 걸 도와드릴까요?",
                    "b: {phone_model:을} 새로 개통하려고요.",
                    "a: 요금제는 어떤 걸로 하시겠어요?",
                    "b: {plan}.",
                    "a: 본인 확인을 위해 주민등록번호와 생년월일을 확인하겠습니다.",
                    "b: 주민등록번호는 #SSN#이고, 생년월일은 #DateOfBirth#예요.",
                    "a: 번호는 기존 번호 #PhoneNumber# 그대로 쓰시나요?",
                    "b: 네, 번호는 그대로 쓸게요.",
                    "a: 개통 완료됐습니다. {gift_item:도} 사은품으로 드릴게요.",
                ),
                summaries=(
                    "{b:은} 매장에서 {phone_model:을} 개통하고 {plan_s:을} 선택합니다. 기존 번호는 그대로 사용합니다.",
                    "{a:은} {b:의} 본인 확인을 한 뒤 {phone_model} 개통을 마치고 {gift_item:을} 사은품으로 줍니다.",
                    "{b:이} {plan_s:으로} {phone_model:을} 개통합니다. {a:은} 사은품으로 {gift_item:을} 줍니다.",
                ),
            ),
            DialogueTemplate(
                register="casual",
                nameable="b",
                slots={"phone_price": ("80만 원", "95만 원", "120만 원")},
                lines=(
                    "a: 나 휴대폰 새로 바꿨어. {phone_model:이야}.",
                    "b: 오, 좋겠다. 얼마 줬어?",
                    "a: {phone_price}. 할부로 했어.",
                    "b: 번호는 그대로야?",
                    "a: 아니, 바꿨어. 새 번호는 #PhoneNumber#야. 저장해 둬.",
                    "b: 알았어. 카메라는 어때?",
                    "a: 완전 좋아. 밤에 찍어도 선명해.",
                ),
                summaries=(
                    "{a:은} {b:에게} {phone_price:을} 주고 {phone_model:으로} 휴대폰을 바꿨다고 말하고 새 번호를 알려 줍니다.",
                    "{a:이} 새로 산 {phone_model:을} 자랑하며 바뀐 전화번호를 {b:에게} 알려 줍니다.",
                    "{b:은} {a:의} 새 휴대폰인 {phone_model:의} 가격과 카메라에 대해 묻습니다.",
                ),
            ),
        ),
    ),
    TopicSpec(
        topic="병원 예약",
        slots={
            "clinic,reason,reason_s": (
                ("서울 내과", "요즘 소화가 잘 안 돼서요", "소화 불량"),
                ("튼튼 정형외과", "무릎이 계속 아파서요", "무릎 통증"),
                ("맑은 안과", "눈이 자꾸 충혈돼서요", "눈 충혈"),
                ("하늘 치과", "어금니가 시려서요", "어금니 시림"),
                ("밝은 피부과", "팔에 두드러기가 나서요", "두드러기"),
            ),
            "appt_day": ("내일", "목요일", "다음 주 월요일"),
            "appt_time": ("오전 10시", "오후 2시", "오후 4시 30분"),
        },
        templates=(
            DialogueTemplate(
                register="polite",
                slots={"patient": ("김민수", "이지영", "박서준", "최유리")},
                lines=(
                    "a: 네, {clinic}입니다.",
                    "b: 진료 예약을 하고 싶어요. {reason}.",
                    "a: 처음 오시는 거면 성함과 생년월일을 알려 주세요.",
                    "b: 이름은 {patient}, 생년월일은 #DateOfBirth#예요.",
                    "a: {appt_day} {appt_time:에} 가능한데 괜찮으세요?",
                    "b: 네, 그때 갈게요.",
                    "a: 예약 확인 문자를 #PhoneNumber#로 보내 드릴까요?",
                    "b: 네, 그 번호로 보내 주세요.",
                ),
                summaries=(
                    "{b:은} {reason_s:으로} {clinic:에} 진료 예약을 합니다. 예약은 {appt_day} {appt_time}입니다.",
                    "{a:은} {b:의} 이름과 생년월일을 확인하고 {appt_day} {appt_time:으로} 진료 예약을 잡아 줍니다.",
                    "{reason_s:이} 있는 {b:이} {clinic:에} 전화해 {appt_day} {appt_time:에} 진료를 예약합니다.",
                ),
            ),
            DialogueTemplate(
                register="polite",
                lines=(
                    "a: 안녕하세요, {appt_day} {appt_time:에} 예약한 사람인데요. 예약을 바꾸고 싶어요.",
                    "b: 네, {clinic}입니다. 본인 확인을 위해 주민등록번호를 알려 주시겠어요?",
                    "a: #SSN#입니다.",
                    "b: 확인됐습니다. 무슨 일로 예약하셨었죠?",
                    "a: {reason}. 그런데 그날 급한 일이 생겨서요.",
                    "b: 그럼 하루 뒤 같은 시간은 어떠세요?",
                    "a: 좋아요. 그때 갈게요.",
                ),
                summaries=(
                    "{a:은} {reason_s:으로} {clinic:에} 잡아 둔 {appt_day} {appt_time} 예약을 급한 일 때문에 바꾸려고 합니다. {b:은} 하루 뒤 같은 시간으로 예약을 옮겨 줍니다.",
                    "{a:이} {clinic} 진료 예약 변경을 요청하자 {b:은} 주민등록번호로 본인 확인을 하고 하루 뒤로 예약을 바꿔 줍니다.",
                    "{b:은} 급한 일이 생긴 {a:의} {clinic} 예약을 하루 뒤 같은 시간으로 변경해 줍니다.",
                ),
            ),
        ),
    ),
)

# Neutral exchanges inserted to vary length; (role a line, role b line) per register.
FILLER_EXCHANGES: dict[str, tuple[tuple[str, str], ...]] = {
    "polite": (
        ("오늘 날씨가 많이 춥네요.", "네, 갑자기 기온이 뚝 떨어졌어요."),
        ("주말이라 그런지 사람이 많네요.", "네, 오늘따라 유난히 바쁘네요."),
        ("잠시만요, 메모 좀 할게요.", "네, 천천히 하세요."),
        ("제가 말을 너무 빨리 했나요?", "아니요, 잘 알아들었어요."),
        ("요즘 비가 자주 오네요.", "그러게요, 우산을 꼭 챙겨야겠어요."),
    ),
    "casual": (
        ("근데 요즘 날씨 진짜 덥지 않아?", "응, 밖에 나가기가 무서울 정도야."),
        ("너 요즘 좀 피곤해 보인다.", "응, 요즘 잠을 잘 못 자서 그래."),
        ("이따 시간 되면 커피 한잔할래?", "좋아, 오늘은 내가 살게."),
        ("아 맞다, 어제 드라마 봤어?", "아직 못 봤어. 스포하지 마!"),
        ("요즘 시험 때문에 정신없지?", "말도 마. 하루에 네 시간밖에 못 자."),
    ),
}

# Sentences appended to lines of "long" dialogues; they add length without adding facts.
# Each is used at most once per dialogue.
ELABORATIONS: dict[str, tuple[str, ...]] = {
    "polite": (
        "사실 요즘 회사 일이 너무 많아서 이런 걸 미리 챙길 여유가 전혀 없었어요.",
        "여러 곳에 알아봤는데 주변에서 여기가 제일 친절하고 믿을 만하다고 하더라고요.",
        "지난번에도 비슷한 일이 있었는데 그때 제대로 확인을 안 해서 고생을 좀 했거든요.",
        "혹시 제가 놓친 부분이 있으면 나중에라도 편하게 말씀해 주시면 정말 감사하겠습니다.",
        "가족들도 이번에는 꼭 꼼꼼하게 확인하고 처리하라고 여러 번 당부하더라고요.",
        "시간이 좀 걸리더라도 처음부터 제대로 하는 게 결국에는 더 낫다고 생각해요.",
        "제가 이런 일은 처음이라 솔직히 조금 긴장되고 뭘 물어봐야 할지도 잘 모르겠어요.",
        "아까부터 계속 신경이 쓰였는데 바쁘신 것 같아서 이제야 여쭤보네요.",
        "가능하면 오늘 안에 다 정리하고 싶어서 일부러 오전에 시간을 비워 뒀어요.",
        "자세히 설명해 주시니까 걱정했던 것보다 훨씬 마음이 놓이고 좋네요.",
        "나중에 다시 헷갈리지 않게 지금 말씀하신 내용을 수첩에 적어 둘게요.",
        "요즘 물가가 많이 올라서 뭐 하나 결정하기도 쉽지 않더라고요.",
        "예전에 다른 곳에서 설명을 제대로 못 들어서 손해를 본 적이 있어서 그래요.",
        "궁금한 게 생기면 다시 연락드려도 괜찮을지 미리 여쭤보고 싶었어요.",
    ),
    "casual": (
        "솔직히 요즘 과제랑 알바 때문에 너무 바빠서 정신이 하나도 없었거든.",
        "지난번에도 비슷한 얘기 했었는데 둘 다 바빠서 결국 흐지부지됐잖아.",
        "이번에는 진짜 미루지 말고 처음부터 끝까지 제대로 해 보고 싶어.",
        "다른 친구들한테도 물어봤는데 다들 괜찮은 생각이라고 하더라.",
        "아무튼 너랑 같이 하면 뭘 하든 훨씬 재밌을 것 같아서 제일 먼저 물어보는 거야.",
        "생각만 하다가 시간 다 보내지 말고 이번엔 꼭 실천하자.",
        "나 요즘 이것 때문에 밤에 잠도 잘 못 잘 정도로 계속 고민했거든.",
        "괜히 미루다가 나중에 또 후회할 것 같아서 지금 얘기하는 거야.",
        "엄마도 이번엔 잘해 보라고 하시면서 은근히 기대하시는 눈치더라.",
        "어제 밤새 인터넷으로 이것저것 찾아보느라 새벽 세 시에 잤어.",
        "진짜 기대된다, 생각만 해도 벌써부터 설레는 것 같아.",
        "요즘 뭐든 다 비싸져서 돈 쓰는 게 좀 무섭긴 한데 이건 괜찮을 것 같아.",
        "혹시 내가 너무 성급하게 정하는 것 같으면 솔직하게 말해 줘.",
        "지난주에 형이랑 얘기하다가 문득 이 생각이 났어.",
    ),
}

# --------------------------------------------------------------------------------------
# Korean particles
# --------------------------------------------------------------------------------------
# (form after a final consonant, form after a vowel); keyed by either form.
_PARTICLE_PAIRS = (
    ("은", "는"), ("이", "가"), ("을", "를"), ("과", "와"), ("으로", "로"),
    ("이에요", "예요"), ("이고", "고"), ("이야", "야"),
)
PARTICLES: dict[str, tuple[str, str]] = {form: pair for pair in _PARTICLE_PAIRS for form in pair}
_DIGIT_FINALS = {"0": "ㅇ", "1": "ㄹ", "3": "ㅁ", "6": "ㄱ", "7": "ㄹ", "8": "ㄹ"}  # 영 일 삼 육 칠 팔
_LATIN_FINALS = {"l": "ㄹ", "m": "ㅁ", "n": "ㄴ", "k": "ㄱ", "p": "ㅂ", "b": "ㅂ", "d": "ㄷ", "g": "ㅇ"}
_RIEUL_JONG_INDEX = 8
_SPEAKER_TAG = re.compile(r"#Person(\d+)#")


def final_consonant(word: str) -> str:
    """Return the final consonant (jamo) of how ``word`` is read aloud, or "" for a vowel ending."""
    tag = _SPEAKER_TAG.fullmatch(word)
    if tag:  # competition style: "#Person1#은" (one), "#Person2#는", "#Person3#가"
        return "ㄴ" if tag.group(1) == "1" else ""
    last = word.strip("#")[-1:]
    if "가" <= last <= "힣":
        jong = (ord(last) - ord("가")) % 28
        return "" if jong == 0 else ("ㄹ" if jong == _RIEUL_JONG_INDEX else "ㄴ")
    if last.isdigit():
        return _DIGIT_FINALS.get(last, "")
    return _LATIN_FINALS.get(last.lower(), "")


def attach_particle(word: str, particle: str) -> str:
    """Append ``particle`` to ``word``, choosing 은/는, 이/가, 으로/로 ... by the final sound."""
    if particle not in PARTICLES:
        return word + particle  # invariant particles: 에, 에게, 의, 에서, 까지, 부터, 도
    after_consonant, after_vowel = PARTICLES[particle]
    final = final_consonant(word)
    if after_consonant == "으로" and final == "ㄹ":
        return word + "로"  # ㄹ-final takes 로: 서울로, 2박 3일로
    return word + (after_consonant if final else after_vowel)


def vocative(name: str) -> str:
    """Casual address: 민수야, 지영아; Latin names stay bare (Jimmy)."""
    if not ("가" <= name[-1] <= "힣"):
        return name
    return name + ("아" if final_consonant(name) else "야")


_PLACEHOLDER = re.compile(r"\{(\w+)(?::(\w+))?\}")


def fill(template: str, values: dict[str, str]) -> str:
    """Replace {slot} / {slot:particle} placeholders; a missing slot raises KeyError."""

    def replace(match: re.Match[str]) -> str:
        word = values[match.group(1)]
        return attach_particle(word, match.group(2)) if match.group(2) else word

    return _PLACEHOLDER.sub(replace, template)


# --------------------------------------------------------------------------------------
# Rendering one example
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One rendered dialogue with its three summary phrasings."""

    topic: str
    dialogue: str
    summaries: tuple[str, str, str]


def draw_slots(pools: SlotPools, rng: random.Random) -> dict[str, str]:
    """Pick one value per pool; "x,y" keys bind a tuple of values to several slot names."""
    values: dict[str, str] = {}
    for key in sorted(pools):  # sorted: draw order must not depend on dict literal order
        choice = rng.choice(pools[key])
        names = key.split(",")
        values.update(zip(names, choice if len(names) > 1 else (choice,), strict=True))
    return values


def speaker_order(lines: tuple[str, ...]) -> dict[str, str]:
    """Map roles to #PersonN# tags in order of first appearance (the first speaker is #Person1#)."""
    order: dict[str, str] = {}
    for line in lines:
        role = line.split(":", 1)[0]
        order.setdefault(role, f"#Person{len(order) + 1}#")
    return order


def pad_with_fillers(lines: list[str], register: str, n_pairs: int, rng: random.Random) -> list[str]:
    """Insert ``n_pairs`` filler exchanges (a then b) where they keep a/b alternation."""
    pairs = rng.sample(FILLER_EXCHANGES[register], k=n_pairs)
    for line_a, line_b in pairs:
        # A slot after a b-line and before an a-line keeps alternation; else append at the end.
        slots = [i for i in range(1, len(lines)) if lines[i - 1][0] == "b" and lines[i][0] == "a"]
        at = rng.choice(slots) if slots else len(lines)
        lines[at:at] = [f"a: {line_a}", f"b: {line_b}"]
    return lines


def elaborate(lines: list[str], register: str, rng: random.Random) -> list[str]:
    """Make a long dialogue: append one or two unused neutral sentences to most lines."""
    pool = rng.sample(ELABORATIONS[register], k=len(ELABORATIONS[register]))
    out = []
    for line in lines:
        if pool and rng.random() < 0.85:
            n_extra = min(len(pool), rng.choice((1, 2)))
            line = " ".join([line, *(pool.pop() for _ in range(n_extra))])
        out.append(line)
    return out


def choose_length_plan(rng: random.Random) -> tuple[int, bool]:
    """Return (filler exchange pairs, long mode) so lengths vary widely but stay mostly short."""
    n_pairs = rng.choices((0, 1, 2, 3), weights=(50, 30, 15, 5))[0]
    return n_pairs, rng.random() < 0.07


def render_example(spec: TopicSpec, rng: random.Random) -> Example:
    """Render one dialogue and three summaries of ``spec`` from one set of slot values."""
    template = rng.choice(spec.templates)
    values = draw_slots({**spec.slots, **template.slots}, rng)
    tags = speaker_order(template.lines)
    name = rng.choice(CASUAL_NAMES) if template.nameable and rng.random() < 0.35 else ""

    n_pairs, long_mode = choose_length_plan(rng)
    room = (MAX_TURNS - len(template.lines)) // 2  # filler pairs that still fit in MAX_TURNS
    n_pairs = room if long_mode else min(n_pairs, room)
    lines = pad_with_fillers(list(template.lines), template.register, n_pairs, rng)
    if long_mode:
        lines = elaborate(lines, template.register, rng)

    rendered = []
    for line in lines:
        role, text = line.split(":", 1)
        text = fill(text.strip(), {**values, **tags})
        if name and not rendered and role != template.nameable:
            text = f"{vocative(name)}, {text}"  # the first speaker addresses the named friend
        rendered.append(f"{tags[role]}: {text}")

    summaries = tuple(
        fill(summary, {**values, **summary_refs(tags, template.nameable, name, rng)})
        for summary in template.summaries
    )
    return Example(topic=spec.topic, dialogue="\n".join(rendered), summaries=summaries)


def summary_refs(tags: dict[str, str], nameable: str, name: str, rng: random.Random) -> dict[str, str]:
    """Speaker references for one summary: tags, or sometimes the named friend's name."""
    refs = dict(tags)
    if name and rng.random() < 0.5:
        refs[nameable] = name
    return refs


# --------------------------------------------------------------------------------------
# Splits and files
# --------------------------------------------------------------------------------------


def generate_splits(seed: int, counts: dict[str, int]) -> dict[str, list[Example]]:
    """Generate disjoint splits; each split cycles through all topics in shuffled order."""
    rng = random.Random(seed)
    seen: set[str] = set()
    splits: dict[str, list[Example]] = {}
    for split, n_rows in counts.items():
        topic_order: list[TopicSpec] = []
        while len(topic_order) < n_rows:
            block = list(TOPICS)
            rng.shuffle(block)
            topic_order.extend(block)
        splits[split] = [unique_example(spec, rng, seen) for spec in topic_order[:n_rows]]
    return splits


def unique_example(spec: TopicSpec, rng: random.Random, seen: set[str], max_tries: int = 200) -> Example:
    """Render examples until one has a dialogue not used anywhere yet (splits must not overlap)."""
    for _ in range(max_tries):
        example = render_example(spec, rng)
        if example.dialogue not in seen:
            seen.add(example.dialogue)
            return example
    raise RuntimeError(f"topic {spec.topic!r}: no new dialogue after {max_tries} tries; add slot values")


def build_tables(splits: dict[str, list[Example]], rng: random.Random) -> dict[str, pd.DataFrame]:
    """Turn examples into the competition's CSV tables plus test references."""

    def labeled(split: str) -> pd.DataFrame:
        rows = [
            {"fname": f"{split}_{i}", "dialogue": ex.dialogue, "summary": rng.choice(ex.summaries), "topic": ex.topic}
            for i, ex in enumerate(splits[split])
        ]
        return pd.DataFrame(rows, columns=["fname", "dialogue", "summary", "topic"])

    test = splits["test"]
    fnames = [f"test_{i}" for i in range(len(test))]
    refs = []
    for fname, ex in zip(fnames, test, strict=True):
        ordered = rng.sample(ex.summaries, k=3)
        refs.append({"fname": fname, "summary1": ordered[0], "summary2": ordered[1], "summary3": ordered[2], "topic": ex.topic})
    return {
        "train.csv": labeled("train"),
        "dev.csv": labeled("dev"),
        "test.csv": pd.DataFrame({"fname": fnames, "dialogue": [ex.dialogue for ex in test]}),
        "test_refs.csv": pd.DataFrame(refs, columns=["fname", "summary1", "summary2", "summary3", "topic"]),
        "sample_submission.csv": pd.DataFrame({"fname": fnames, "summary": SUBMISSION_PLACEHOLDER}),
    }


def readme_text(tables: dict[str, pd.DataFrame], seed: int) -> str:
    """Describe the bundled sample data (written next to the CSV files)."""
    counts = "\n".join(f"| `{name}` | {len(df)} |" for name, df in tables.items())
    topics = ", ".join(spec.topic for spec in TOPICS)
    return f"""# Bundled sample data (synthetic)

Small, fully synthetic Korean dialogue-summarization data in the format of the Upstage AI Lab
"일상 대화 요약" competition. It is for tests, demos and smoke runs only: no row comes from the real
competition data, and scores on it say nothing about the leaderboard.

Generated by the project's template generator (do not edit by hand; a test checks the files equal a
fresh generation):

```
python -m competition.sample_data --out data/sample --seed {seed}
```

| file | rows |
|---|---|
{counts}

- `train.csv`, `dev.csv`: `fname,dialogue,summary,topic`
- `test.csv`: `fname,dialogue`
- `test_refs.csv`: `fname,summary1,summary2,summary3,topic`: three reference summaries per test
  dialogue (same facts, different wording), for multi-reference scoring demos.
- `sample_submission.csv`: `,fname,summary` (leading unnamed index column), every summary `{SUBMISSION_PLACEHOLDER}`.

Speakers are `#Person1#`, `#Person2#` (sometimes `#Person3#`); personal data appears only as masks
(`#PhoneNumber#`, `#Address#`, `#Email#`, `#CardNumber#`, `#CarNumber#`, `#PassportNumber#`,
`#DateOfBirth#`, `#SSN#`). Each dialogue and its summaries are rendered from the same slot values,
so the summaries follow from the dialogue. Topics ({len(TOPICS)}): {topics}.
"""


def write_atomic(path: Path, text: str) -> None:
    """Write UTF-8 text (no BOM) via a temp file in the same directory, then os.replace."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; data files should be readable like normal files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_sample_data(out_dir: Path, seed: int = DEFAULT_SEED, counts: dict[str, int] | None = None) -> dict[str, int]:
    """Generate all sample files into ``out_dir``; return row counts per file."""
    counts = dict(DEFAULT_COUNTS if counts is None else counts)
    rng = random.Random(f"{seed}:tables")  # separate stream from the dialogue generator
    tables = build_tables(generate_splits(seed, counts), rng)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        keep_index = name == "sample_submission.csv"  # the real file has a leading unnamed index column
        write_atomic(out_dir / name, df.to_csv(index=keep_index, lineterminator="\n"))
    write_atomic(out_dir / "README.md", readme_text(tables, seed))
    return {name: len(df) for name, df in tables.items()}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; counts must be positive (argparse exits with code 2 otherwise)."""
    parser = argparse.ArgumentParser(description="Generate the bundled synthetic Korean sample data.")
    parser.add_argument("--out", type=Path, default=Path("data/sample"), help="output folder")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (same seed -> same bytes)")
    for split, n_rows in DEFAULT_COUNTS.items():
        parser.add_argument(f"--n-{split}", type=int, default=n_rows, help=f"{split} rows")
    args = parser.parse_args(argv)
    for split in DEFAULT_COUNTS:
        if getattr(args, f"n_{split}") < 1:
            parser.error(f"--n-{split} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    args = parse_args(argv)
    counts = {split: getattr(args, f"n_{split}") for split in DEFAULT_COUNTS}
    written = write_sample_data(args.out, args.seed, counts)
    for name, n_rows in written.items():
        print(f"{args.out / name}: {n_rows} rows")
    return 0


if __name__ == "__main__":
    from competition.cli import exit_on_bad_input

    sys.exit(exit_on_bad_input(main)())  # a full disk or unwritable --out: one error line, exit 2
